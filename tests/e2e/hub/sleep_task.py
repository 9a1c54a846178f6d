"""A non-parallel Fractal task that only waits: keeps a job running for a while.

`python sleep_task.py --args-json A --out-json B`; A holds `{"seconds": ...}` (plus the
`zarr_urls` and `zarr_dir` every non-parallel task gets), and optionally `"until_file": path`:
then it waits until that file exists, `seconds` at most. It writes no output.
"""

import argparse
import json
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument("--args-json", required=True)
parser.add_argument("--out-json", required=True)
options = parser.parse_args()
with open(options.args_json) as handle:
    arguments = json.load(handle)
deadline = time.monotonic() + float(arguments.get("seconds", 5))
until_file = arguments.get("until_file")
if until_file is None:
    time.sleep(max(deadline - time.monotonic(), 0))
else:
    while not os.path.exists(until_file) and time.monotonic() < deadline:
        time.sleep(0.1)
