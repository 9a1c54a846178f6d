"""A task that misbehaves on purpose (as its `mode` says), for the runner's failure tests."""

import json
import os
import signal
import sys
import time
from pathlib import Path


def main() -> None:
    args_path = Path(sys.argv[sys.argv.index("--args-json") + 1])
    out_path = Path(sys.argv[sys.argv.index("--out-json") + 1])
    args = json.loads(args_path.read_text())
    mode = args["mode"]
    zarr_url = args.get("zarr_url", "")
    victims = args.get("victims", [args["victim"]] if "victim" in args else None)
    if victims is not None and not any(zarr_url.endswith(victim) for victim in victims):
        return  # only the victim images misbehave; the others succeed with no output
    print(f"misbehaving ({mode}) on {zarr_url}", flush=True)
    if mode == "exit":
        print("Traceback: ValueError: the image is corrupt", file=sys.stderr)
        sys.exit(3)
    if mode == "malformed":
        out_path.write_text("{this is not json")
    elif mode == "outside":
        update = {"zarr_url": "/somewhere/else/image"}
        out_path.write_text(json.dumps({"image_list_updates": [update]}))
    elif mode == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    elif mode == "sleep":
        time.sleep(float(args.get("seconds", 60)))


if __name__ == "__main__":
    main()
