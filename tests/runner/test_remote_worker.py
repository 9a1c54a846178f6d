"""The SLURM worker (`runner/remote.py`) on a SIGTERM, the signal of scancel: it ends with
every process it started, also when the signal comes while a warm starter still imports the
task (the calls then fall back to spawning, right while the worker is being stopped).

Run here as SLURM runs it, `python -m fractal_jupyter.runner.remote <batch file>`, without
the cluster: the signal is what matters.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle

from fractal_jupyter import __version__
from fractal_jupyter.runner.interface import TaskCall
from tests.support.jobs import processes_mentioning, wait_for

# A task whose import takes a while (as the real ones' numpy, dask, zarr...) and whose calls
# sleep: the worker is stopped while the starter imports it.
SLOW_TASK = """
import sys, time
time.sleep(1.0)
if __name__ == "__main__":
    time.sleep(60)
"""


def write_batch(job_dir: Path, script: Path, calls: int) -> Path:
    data = {
        "job_dir": str(job_dir),
        "folder": "1_slow",
        "calls": [
            TaskCall(
                1, "slow", f"{sys.executable} {script}", {}, "1_slow", f"1_par_{i:07d}", "parallel"
            )
            for i in range(calls)
        ],
        "parallel": calls,
        "results": "1_batch.results.json",
        "archive": None,
        "version": __version__,
        "warm_start": True,
    }
    path = job_dir / "1_batch.batch.pickle"
    path.write_bytes(cloudpickle.dumps(data))
    return path


def test_a_sigterm_during_the_warm_import_leaves_no_process(tmp_path: Path) -> None:
    script = tmp_path / "slow_task.py"
    script.write_text(SLOW_TASK)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    batch = write_batch(job_dir, script, 4)
    worker = subprocess.Popen(
        [sys.executable, "-m", "fractal_jupyter.runner.remote", str(batch)],
        start_new_session=True,
    )
    try:
        # The warm starter is importing the task: its command line names the script.
        wait_for(lambda: processes_mentioning(str(script)), 30, "no warm starter")
        time.sleep(0.3)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 128 + signal.SIGTERM
        # Nothing of the worker runs on: no starter, no call it spawned instead.
        time.sleep(0.5)
        assert processes_mentioning(str(tmp_path)) == []
        assert not (job_dir / "1_slow" / "1_batch.results.json").exists()  # cancelled: no results
    finally:
        for pid in processes_mentioning(str(tmp_path)):
            subprocess.run(["kill", "-9", str(pid)], check=False)
        worker.kill()
