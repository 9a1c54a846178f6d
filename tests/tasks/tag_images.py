"""A non-parallel task: tags every input image and sets a dataset attribute filter."""

import json
import sys
from pathlib import Path


def main() -> None:
    args = json.loads(Path(sys.argv[sys.argv.index("--args-json") + 1]).read_text())
    out = Path(sys.argv[sys.argv.index("--out-json") + 1])
    updates = [{"zarr_url": url, "attributes": {"tag": args["tag"]}} for url in args["zarr_urls"]]
    out.write_text(
        json.dumps({"image_list_updates": updates, "filters": {"attributes": {"tag": args["tag"]}}})
    )


if __name__ == "__main__":
    main()
