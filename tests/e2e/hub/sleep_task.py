"""A non-parallel Fractal task that only waits: keeps a job running for a while.

`python sleep_task.py --args-json A --out-json B`; A holds `{"seconds": ...}` (plus the
`zarr_urls` and `zarr_dir` every non-parallel task gets). It writes no output.
"""

import argparse
import json
import time

parser = argparse.ArgumentParser()
parser.add_argument("--args-json", required=True)
parser.add_argument("--out-json", required=True)
options = parser.parse_args()
with open(options.args_json) as handle:
    arguments = json.load(handle)
time.sleep(float(arguments.get("seconds", 5)))
