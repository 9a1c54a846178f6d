"""`jupyter fractal jobs [JOB_ID] [--follow]`: the caller's jobs, one job, or its log live."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime

from ..client import FractalClient
from ..schemas.job import JobRead
from .base import (
    EXIT_FAILURE,
    EXIT_OK,
    CommandApp,
    CommandFailed,
    add_server_options,
    connect,
    new_parser,
    print_json,
)

COLUMNS = ("ID", "STATUS", "PROJECT", "WORKFLOW", "DATASET", "STARTED", "ENDED")


def _when(timestamp: datetime | None) -> str:
    return "-" if timestamp is None else timestamp.strftime("%Y-%m-%d %H:%M:%S")


def job_rows(jobs: list[JobRead]) -> list[tuple[str, ...]]:
    return [
        (
            str(job.id),
            job.status,
            str(job.project_dump.get("name", job.project_id)),
            str(job.workflow_dump.get("name", job.workflow_id)),
            str(job.dataset_dump.get("name", job.dataset_id)),
            _when(job.start_timestamp),
            _when(job.end_timestamp),
        )
        for job in jobs
    ]


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def find_job(client: FractalClient, job_id: int) -> tuple[int, JobRead]:
    """One of the caller's jobs with its log (a running one's so far), and its project."""
    job = next((job for job in client.list_user_jobs(log=False) if job.id == job_id), None)
    if job is None or job.project_id is None:  # a job without a project is nobody's
        raise CommandFailed(
            f"you have no job with id {job_id} (`jupyter fractal jobs` lists yours)."
        )
    return job.project_id, client.get_job(job.project_id, job.id, show_tmp_logs=True)


def ended_line(job: JobRead) -> str:
    return f"Job {job.id} {job.status} at {_when(job.end_timestamp)}."


def follow(
    client: FractalClient, project_id: int, job: JobRead, interval: float, quiet: bool
) -> JobRead:
    """Print the job's log as it grows until the job ends; the ended job."""
    shown = ""
    while True:
        log = job.log or ""
        # The final log continues the live one; if it does not, it is shown whole.
        new = log[len(shown) :] if log.startswith(shown) else "\n" + log
        if new and not quiet:
            sys.stdout.write(new)
            sys.stdout.flush()
        shown = log
        if job.status != "submitted":
            break
        time.sleep(interval)
        job = client.get_job(project_id, job.id, show_tmp_logs=True)
    if not quiet and shown and not shown.endswith("\n"):
        print()
    return job


class JobsApp(CommandApp):
    name = "jupyter-fractal-jobs"
    command = "jobs"
    description = "Your Fractal jobs; one job with its log; --follow streams a job's log."

    def build_parser(self) -> argparse.ArgumentParser:
        parser = new_parser(
            self.command,
            "List your Fractal jobs (those of your projects) with their status. With a "
            "JOB_ID, show that job and its log; with --follow, print its log as it grows "
            "until the job ends (the exit code then says how it ended).",
            "no job with this id among yours, or the followed job failed",
        )
        parser.add_argument("job_id", nargs="?", type=int, metavar="JOB_ID", help="a job's id")
        parser.add_argument(
            "-f",
            "--follow",
            action="store_true",
            help="stream the job's log until it ends; exit 0 if it is done, 1 if it failed "
            "(with --json: no log while it runs, the ended job at the end)",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=0.5,
            help="seconds between two looks at a followed job (default: 0.5)",
        )
        add_server_options(parser)
        return parser

    def run(self) -> int:
        arguments = self.arguments
        if arguments.follow and arguments.job_id is None:
            self.parser.error("--follow needs a JOB_ID")
        with connect(arguments) as client:
            if arguments.job_id is None:
                return self.list_jobs(client)
            project_id, job = find_job(client, arguments.job_id)
            if arguments.follow:
                job = follow(client, project_id, job, arguments.interval, self.json_output)
                if self.json_output:
                    print_json(job)
                else:
                    print(ended_line(job))
                return EXIT_FAILURE if job.status == "failed" else EXIT_OK
        if self.json_output:
            print_json(job)
        else:
            rows = job_rows([job])
            print(table([COLUMNS, *rows]))
            print(f"\nLog:\n{job.log or '(empty)'}".rstrip())
        return EXIT_OK

    def list_jobs(self, client: FractalClient) -> int:
        jobs = client.list_user_jobs(log=False)
        if self.json_output:
            print_json(jobs)
        elif jobs:
            print(table([COLUMNS, *job_rows(jobs)]))
        else:
            print("You have no jobs.")
        return EXIT_OK
