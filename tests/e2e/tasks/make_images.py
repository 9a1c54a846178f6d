"""A fractal-server 2.6-style non-parallel task (it gets `zarr_urls`): `count` new images."""

import json
import sys
from pathlib import Path


def main() -> None:
    args = json.loads(Path(sys.argv[sys.argv.index("--args-json") + 1]).read_text())
    out = Path(sys.argv[sys.argv.index("--out-json") + 1])
    updates = []
    for index in range(args["count"]):
        zarr_url = f"{args['zarr_dir']}/{args.get('prefix', 'image')}_{index}.zarr"
        Path(zarr_url).mkdir(parents=True, exist_ok=True)
        updates.append({"zarr_url": zarr_url, "attributes": {"index": index}})
    print(f"made {len(updates)} images after {len(args['zarr_urls'])} inputs", flush=True)
    out.write_text(json.dumps({"image_list_updates": updates}))


if __name__ == "__main__":
    main()
