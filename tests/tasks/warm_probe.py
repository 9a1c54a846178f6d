"""A task for the warm-start tests: it records its imports, keeps a module-global state, and
misbehaves as its `mode` says (the same way whether it runs warm or spawned)."""

import gc
import json
import os
import signal
import sys
import time
from pathlib import Path

# Every import of this module as a module (not as `__main__`) leaves its pid here.
if __name__ != "__main__" and os.environ.get("WARM_PROBE_IMPORTS"):
    with open(os.environ["WARM_PROBE_IMPORTS"], "a") as imports:
        imports.write(f"{os.getpid()}\n")

CALLS_SEEN: list[str] = []  # module-global: a fresh run starts with it empty


def main() -> int:
    args = json.loads(Path(sys.argv[sys.argv.index("--args-json") + 1]).read_text())
    out_path = Path(sys.argv[sys.argv.index("--out-json") + 1])
    CALLS_SEEN.append(args.get("zarr_url", ""))
    mode = args.get("mode", "state")
    print(f"probe {mode} in {os.getcwd()}", flush=True)
    if mode == "exit":
        print("Traceback: ValueError: the image is corrupt", file=sys.stderr)
        return 3
    if mode == "raise":
        raise RuntimeError("the task raised")
    if mode == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "allocate":
        blocks = [bytearray(64 * 1024 * 1024) for _ in range(int(args.get("blocks", 16)))]
        print(f"allocated {len(blocks)} blocks")
    if mode == "sleep":
        time.sleep(float(args.get("seconds", 60)))
    probe = {
        "calls_seen": len(CALLS_SEEN),
        "pid": os.getpid(),
        "argv": sys.argv,
        "gc_enabled": gc.isenabled(),
        "cmdline": Path("/proc/self/cmdline").read_bytes().rstrip(b"\0").decode().split("\0"),
        "cwd": os.getcwd(),
        "mark": os.environ.get("WARM_PROBE_MARK"),
    }
    if args.get("zarr_url"):  # in a job: what it saw, as attributes of its image
        update = {"zarr_url": args["zarr_url"], "attributes": {"calls_seen": len(CALLS_SEEN)}}
        out_path.write_text(json.dumps({"image_list_updates": [update]}))
    else:
        out_path.write_text(json.dumps({"probe": probe}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
