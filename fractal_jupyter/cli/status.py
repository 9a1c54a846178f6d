"""`jupyter fractal status`: is Fractal served by the running server, and how."""

from __future__ import annotations

import argparse
from typing import Any

from ..client import FractalClient, FractalUnavailable
from .base import (
    EXIT_FAILURE,
    EXIT_OK,
    CommandApp,
    add_server_options,
    alive_answer,
    connect,
    new_parser,
    not_loaded,
    print_json,
)

ADMINS_ONLY = "(shown to Fractal administrators only)"


def server_status(client: FractalClient) -> dict[str, Any]:
    """What `status` reports; `serving` is False when the extension does not answer."""
    status: dict[str, Any] = {"server_url": client.url, "found_from": client.source}
    try:
        alive = alive_answer(client)
    except FractalUnavailable as error:
        return {**status, "serving": False, "problem": str(error.detail)}
    if alive is None:
        return {**status, "serving": False, "problem": not_loaded(client)}
    status.update(serving=True, version=alive.get("version"))
    # The caller's record lives in the database: its answer shows the database answers.
    user = client.get_current_user()
    status["user"] = {"username": user.username, "is_admin": user.is_superuser}
    database: dict[str, Any] = {"reachable": True, "url": None}
    status["runner_backend"] = None
    if user.is_superuser:
        settings = client.get_server_settings()
        database["url"] = settings.get("db_url")
        status["runner_backend"] = settings.get("runner_backend")
    status["database"] = database
    running = [job for job in client.list_user_jobs(log=False) if job.status == "submitted"]
    status["running_jobs"] = [
        {"id": job.id, "workflow": job.workflow_dump.get("name"), "project_id": job.project_id}
        for job in running
    ]
    return status


def status_lines(status: dict[str, Any]) -> list[str]:
    lines = [f"Jupyter server:  {status['server_url']} (found from {status['found_from']})"]
    if not status["serving"]:
        return [*lines, f"Fractal:         NOT SERVING: {status['problem']}"]
    user = status["user"]
    role = "administrator" if user["is_admin"] else "user"
    lines += [
        f"Fractal:         serving, fractal_jupyter {status['version']}",
        f"User:            {user['username']} ({role})",
        f"Database:        reachable, {status['database']['url'] or ADMINS_ONLY}",
        f"Runner backend:  {status['runner_backend'] or ADMINS_ONLY}",
        f"Running jobs:    {len(status['running_jobs'])}",
    ]
    lines += [
        f"  job {job['id']}: workflow {job['workflow']!r} (project {job['project_id']})"
        for job in status["running_jobs"]
    ]
    return lines


class StatusApp(CommandApp):
    name = "jupyter-fractal-status"
    command = "status"
    description = "Is Fractal served by the running Jupyter server: database, runner, jobs."

    def build_parser(self) -> argparse.ArgumentParser:
        parser = new_parser(
            self.command,
            "Show whether the running Jupyter server serves Fractal (the fractal_jupyter "
            "extension is loaded and configured), its version, who you are there, its "
            "database and runner backend (to administrators) and your running jobs.",
            "the server answers but does not serve Fractal (extension not loaded, or its "
            "configuration or database is wrong), or it refused",
        )
        add_server_options(parser)
        return parser

    def run(self) -> int:
        with connect(self.arguments, check=False) as client:
            status = server_status(client)
        if self.json_output:
            print_json(status)
        else:
            print("\n".join(status_lines(status)))
        return EXIT_OK if status["serving"] else EXIT_FAILURE
