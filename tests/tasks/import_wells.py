"""A converter compound task: the init plans one image per well, the compute creates it."""

import json
import sys
from pathlib import Path


def main() -> None:
    args = json.loads(Path(sys.argv[sys.argv.index("--args-json") + 1]).read_text())
    out = Path(sys.argv[sys.argv.index("--out-json") + 1])
    if "init_args" not in args:  # the non-parallel part: no zarr_urls for a converter
        assert "zarr_urls" not in args, "a converter must not get zarr_urls"
        plan = [
            {"zarr_url": f"{args['zarr_dir']}/imported/{well}", "init_args": {"well": well}}
            for well in args["wells"]
        ]
        out.write_text(json.dumps({"parallelization_list": plan}))
        return
    Path(args["zarr_url"]).mkdir(parents=True, exist_ok=True)
    update = {
        "zarr_url": args["zarr_url"],
        "attributes": {"well": args["init_args"]["well"]},
        "types": {"imported": True},
    }
    out.write_text(json.dumps({"image_list_updates": [update]}))


if __name__ == "__main__":
    main()
