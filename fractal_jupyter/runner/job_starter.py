"""The job starter: `python -m fractal_jupyter.runner.job_starter`, a warm start for jobs.

A job process spends 0.2-0.3 s importing (the engine's pydantic models mostly) before it runs
anything: for a small job that is most of its time. The server starts this process once (in
its own session); it imports the job process's modules and then forks one job process per job.
The job process starts its own session, sends its output to `job-process.log`, takes the
server's environment of the moment and the job folder as working directory, and runs
`runner.job.main`, exactly as `python -m fractal_jupyter.runner.job <job folder>` does.

A job process depends on neither the starter nor the server: when the server ends, its end of
the starter's stdin closes and the starter exits; job processes go on (init adopts them), as
they do after a restart today. The starter's command line names `fractal_jupyter.runner.job`
(as a prefix of its own module's name), and so do the job processes forked from it: the
launcher's liveness check (`JobLauncher.is_alive`) holds for them as for spawned ones.

Protocol: one JSON object a line, `{"job_dir": ..., "env": {...}}` on stdin; the answer is
`{"ready": true}` once after the imports, then `{"pid": n}` per job. No threads run here (a fork
copies only the forking thread), and SIGCHLD is ignored so that ended job processes are reaped
by the kernel (a job process restores it: it waits for its own children).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from . import job
from .files import PROCESS_LOG


def run_job_process(request: dict[str, Any]) -> int:
    """In the forked child: become `python -m fractal_jupyter.runner.job <job folder>`."""
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    job_dir = Path(request["job_dir"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    log = os.open(job_dir / PROCESS_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.chdir(job_dir)
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [job.__file__ or "job.py", str(job_dir)]
    return job.main(job_dir)


def serve() -> int:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # Private copies of the pipes: the job processes get /dev/null and their log instead.
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    replies.write(b'{"ready": true}\n')
    for line in requests:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                requests.close()
                replies.close()
                code = run_job_process(request)
            except BaseException:
                traceback.print_exc()
            finally:
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
                os._exit(code)
        replies.write(json.dumps({"pid": pid}).encode() + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(serve())
