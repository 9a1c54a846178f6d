"""The files of a job folder that the server and the job process share.

- `job.json`: what to run (written by the server before the process starts);
- `events.jsonl`: what happened, one JSON object per line with an increasing `seq`
  (appended by the job process only; the server applies each event once);
- `workflow.log`: the human-readable log, with timestamps;
- `job-process.log`: the job process's own stdout/stderr (crashes end up here);
- `slurm-jobs.txt`: on SLURM, the ids of the job's SLURM jobs (to cancel them if it dies);
- `heartbeat`: touched by the job process while it runs, and `stop-requested`, written by a
  server to stop it from another host (runner/heartbeat.py).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .interface import JSON, WorkflowTaskSpec

SPEC_FILE = "job.json"
EVENTS_FILE = "events.jsonl"
WORKFLOW_LOG = "workflow.log"
PROCESS_LOG = "job-process.log"
# The ids of the SLURM jobs of a job, one a line, appended as they are submitted.
SLURM_JOBS_FILE = "slurm-jobs.txt"
HEARTBEAT_FILE = "heartbeat"
STOP_REQUEST_FILE = "stop-requested"
# Touched in the jobs folder after each submission, to wake the other servers of this runner
# (services/job_watcher.py), idle ones too (app.py).
DOORBELL_FILE = ".job-submitted"
# How `EventWriter` starts every line (json.dumps of a dict whose first key is "seq").
_SEQ_PREFIX = re.compile(r'\{"seq": (\d+),')


@dataclass(frozen=True)
class JobSpec:
    job_id: int
    zarr_dir: str
    images: list[JSON]
    filters: JSON
    tasks: list[WorkflowTaskSpec]
    max_workers: int
    backend: str = "local"  # a runner.settings.Backend
    slurm: JSON | None = None  # runner.settings.SlurmSettings.to_dict() for the SLURM backends
    slurm_account: str | None = None
    worker_init: str | None = None
    # The job's filters (fractal-server 2.11+): runner.engine.JobFilters as JSON.
    attribute_filters: JSON | None = None
    type_filters: dict[str, bool] | None = None
    first_task_zarr_urls: list[str] | None = None
    warm_start: bool = True  # the local backend's (runner.warm); SLURM's is in `slurm`
    # local: seconds a warm starter stays after its last call, for later jobs (0: the job's)
    warm_start_keep_seconds: float = 0.0

    def write(self, job_dir: Path) -> None:
        (job_dir / SPEC_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def read(cls, job_dir: Path) -> JobSpec:
        data: dict[str, Any] = json.loads((job_dir / SPEC_FILE).read_text())
        data["tasks"] = [WorkflowTaskSpec(**task) for task in data["tasks"]]
        return cls(**data)


class EventWriter:
    """Appends events; a line is written whole, so a reader never sees half an event."""

    def __init__(self, job_dir: Path) -> None:
        self.path = job_dir / EVENTS_FILE
        self._seq = sum(1 for _ in read_events(job_dir))
        self._lock = threading.Lock()

    def write(self, kind: str, **data: Any) -> None:
        with self._lock:
            self._seq += 1
            line = json.dumps({"seq": self._seq, "type": kind, "time": time.time(), **data})
            with self.path.open("a") as events:
                events.write(line + "\n")
                events.flush()
                os.fsync(events.fileno())


def read_events(job_dir: Path, after: int = 0) -> list[JSON]:
    """The complete events with `seq > after` (a line still being written is left for later)."""
    try:
        text = (job_dir / EVENTS_FILE).read_text()
    except FileNotFoundError:
        return []
    events = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        # Lines already applied are not decoded: units events of big tasks weigh megabytes.
        written = _SEQ_PREFIX.match(line)
        if written is not None and int(written.group(1)) <= after:
            continue
        event: JSON = json.loads(line)
        if event["seq"] > after:
            events.append(event)
    return events


def recorded_job_ids(job_dir: Path) -> list[str]:
    """The SLURM job ids in `slurm-jobs.txt`."""
    try:
        text = (job_dir / SLURM_JOBS_FILE).read_text()
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip().isdigit()]
