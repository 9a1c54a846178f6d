"""Client methods for users, groups, settings, tokens and the admin API (`admin/v2/`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..schemas.admin import TaskInfo
from ..schemas.group import UserGroupRead
from ..schemas.job import JobRead, JobStatus
from ..schemas.project import ProjectRead
from ..schemas.settings import WidgetSettings
from ..schemas.token import BearerToken
from ..schemas.user import UserRead, UserSettingsRead, UserSettingsReadStrict
from .transport import ClientBase, changes_body, endpoint, fields_given

Changes = BaseModel | Mapping[str, Any] | None
USER = "/auth/users/{user_id}/"
GROUP = "/auth/group/{group_id}/"
ADMIN_JOB = "/admin/v2/job/{job_id}/"


class UsersMixin(ClientBase):
    # --- the caller ------------------------------------------------------------------------

    @endpoint("PATCH", "/auth/current-user/")
    def update_current_user(self, changes: Changes = None, **fields: Any) -> UserRead:
        """Nothing of one's own record can be changed (as fractal-server 2.6.4)."""
        return self._transport.call(
            UserRead, "PATCH", "/auth/current-user/", body=changes_body(changes, fields)
        )

    @endpoint("GET", "/auth/current-user/settings/")
    def get_current_user_settings(self) -> UserSettingsReadStrict:
        return self._transport.call(UserSettingsReadStrict, "GET", "/auth/current-user/settings/")

    @endpoint("PATCH", "/auth/current-user/settings/")
    def update_current_user_settings(
        self, changes: Changes = None, **fields: Any
    ) -> UserSettingsReadStrict:
        """Change one's `slurm_accounts` or `cache_dir` (None clears a field)."""
        return self._transport.call(
            UserSettingsReadStrict,
            "PATCH",
            "/auth/current-user/settings/",
            body=changes_body(changes, fields),
        )

    @endpoint("GET", "/auth/current-user/viewer-paths/")
    def get_viewer_paths(self) -> list[str]:
        """The viewer paths of the caller's groups."""
        return self._transport.call(list[str], "GET", "/auth/current-user/viewer-paths/")

    @endpoint("POST", "/auth/token/login/")
    def login(self, username: str, password: str) -> BearerToken:
        """A bearer token for `username`, whose password is a Jupyter (or JupyterHub) token."""
        return self._transport.call(
            BearerToken,
            "POST",
            "/auth/token/login/",
            form={"username": username, "password": password},
        )

    @endpoint("POST", "/auth/token/logout/")
    def logout(self) -> None:
        self._transport.do("POST", "/auth/token/logout/")

    # --- users and groups (admins) ---------------------------------------------------------

    @endpoint("POST", "/auth/register/")
    def register_user(self, email: str, **fields: Any) -> UserRead:
        """Create a user record (`username`, `is_active`, ... as keyword arguments)."""
        return self._transport.call(
            UserRead, "POST", "/auth/register/", body={"email": email, **fields}
        )

    @endpoint("GET", "/auth/group-names/")
    def list_group_names(self) -> list[str]:
        return self._transport.call(list[str], "GET", "/auth/group-names/")

    @endpoint("GET", "/auth/users/")
    def list_users(self) -> list[UserRead]:
        return self._transport.call(list[UserRead], "GET", "/auth/users/")

    @endpoint("GET", USER)
    def get_user(self, user_id: int, group_ids: bool = True) -> UserRead:
        return self._transport.call(
            UserRead, "GET", USER, {"user_id": user_id}, params={"group_ids": group_ids}
        )

    @endpoint("PATCH", USER)
    def update_user(self, user_id: int, changes: Changes = None, **fields: Any) -> UserRead:
        """Change a user (`email=...`, `is_active=...`), or add them to `new_group_ids`."""
        return self._transport.call(
            UserRead, "PATCH", USER, {"user_id": user_id}, body=changes_body(changes, fields)
        )

    @endpoint("GET", USER + "settings/")
    def get_user_settings(self, user_id: int) -> UserSettingsRead:
        return self._transport.call(
            UserSettingsRead, "GET", USER + "settings/", {"user_id": user_id}
        )

    @endpoint("PATCH", USER + "settings/")
    def update_user_settings(
        self, user_id: int, changes: Changes = None, **fields: Any
    ) -> UserSettingsRead:
        """Change a user's settings (None clears a field)."""
        return self._transport.call(
            UserSettingsRead,
            "PATCH",
            USER + "settings/",
            {"user_id": user_id},
            body=changes_body(changes, fields),
        )

    @endpoint("GET", "/auth/group/")
    def list_groups(self, user_ids: bool = False) -> list[UserGroupRead]:
        return self._transport.call(
            list[UserGroupRead], "GET", "/auth/group/", params={"user_ids": user_ids}
        )

    @endpoint("POST", "/auth/group/")
    def create_group(self, name: str, viewer_paths: Sequence[str] | None = None) -> UserGroupRead:
        paths = None if viewer_paths is None else list(viewer_paths)
        return self._transport.call(
            UserGroupRead,
            "POST",
            "/auth/group/",
            body=fields_given(name=name, viewer_paths=paths),
        )

    @endpoint("GET", GROUP)
    def get_group(self, group_id: int) -> UserGroupRead:
        return self._transport.call(UserGroupRead, "GET", GROUP, {"group_id": group_id})

    @endpoint("PATCH", GROUP)
    def update_group(
        self,
        group_id: int,
        *,
        new_user_ids: Sequence[int] | None = None,
        viewer_paths: Sequence[str] | None = None,
    ) -> UserGroupRead:
        """Add users to a group; replace its viewer paths when given."""
        body = fields_given(
            new_user_ids=None if new_user_ids is None else list(new_user_ids),
            viewer_paths=None if viewer_paths is None else list(viewer_paths),
        )
        return self._transport.call(
            UserGroupRead, "PATCH", GROUP, {"group_id": group_id}, body=body
        )

    @endpoint("DELETE", GROUP)
    def delete_group(self, group_id: int) -> None:
        """Refused by the server (405), as by fractal-server 2.6.4."""
        self._transport.do("DELETE", GROUP, {"group_id": group_id})

    @endpoint("GET", "/api/settings/")
    def get_server_settings(self) -> dict[str, Any]:
        """The server's configuration, secrets masked (admins)."""
        return self._transport.call(dict[str, Any], "GET", "/api/settings/")

    @endpoint("GET", "/api/settings/widgets/")
    def get_widget_settings(self) -> WidgetSettings:
        """Deployment settings the widgets follow (the image viewer's URL template)."""
        return self._transport.call(WidgetSettings, "GET", "/api/settings/widgets/")

    # --- admin/v2 --------------------------------------------------------------------------

    @endpoint("GET", "/admin/v2/project/")
    def admin_list_projects(
        self, id: int | None = None, user_id: int | None = None
    ) -> list[ProjectRead]:
        """Every project, or those with this `id` or this member."""
        return self._transport.call(
            list[ProjectRead],
            "GET",
            "/admin/v2/project/",
            params={"id": id, "user_id": user_id},
        )

    @endpoint("GET", "/admin/v2/job/")
    def admin_list_jobs(
        self,
        *,
        id: int | None = None,
        user_id: int | None = None,
        project_id: int | None = None,
        dataset_id: int | None = None,
        workflow_id: int | None = None,
        status: JobStatus | None = None,
        start_timestamp_min: datetime | None = None,
        start_timestamp_max: datetime | None = None,
        end_timestamp_min: datetime | None = None,
        end_timestamp_max: datetime | None = None,
        log: bool = True,
    ) -> list[JobRead]:
        """Every job matching the filters (timestamps need a time zone)."""
        return self._transport.call(
            list[JobRead],
            "GET",
            "/admin/v2/job/",
            params={
                "id": id,
                "user_id": user_id,
                "project_id": project_id,
                "dataset_id": dataset_id,
                "workflow_id": workflow_id,
                "status": status,
                "start_timestamp_min": start_timestamp_min,
                "start_timestamp_max": start_timestamp_max,
                "end_timestamp_min": end_timestamp_min,
                "end_timestamp_max": end_timestamp_max,
                "log": log,
            },
        )

    @endpoint("GET", ADMIN_JOB)
    def admin_get_job(self, job_id: int, show_tmp_logs: bool = False) -> JobRead:
        return self._transport.call(
            JobRead, "GET", ADMIN_JOB, {"job_id": job_id}, params={"show_tmp_logs": show_tmp_logs}
        )

    @endpoint("PATCH", ADMIN_JOB)
    def admin_update_job(self, job_id: int, status: JobStatus = "failed") -> JobRead:
        """Mark a job failed (a running one is stopped too)."""
        return self._transport.call(
            JobRead, "PATCH", ADMIN_JOB, {"job_id": job_id}, body={"status": status}
        )

    @endpoint("GET", ADMIN_JOB + "stop/")
    def admin_stop_job(self, job_id: int) -> None:
        self._transport.do("GET", ADMIN_JOB + "stop/", {"job_id": job_id})

    @endpoint("GET", ADMIN_JOB + "download/")
    def admin_download_job(self, job_id: int, path: str | Path | None = None) -> bytes:
        """Any job's folder as a zip archive (also written to `path` when given)."""
        return self._transport.download(ADMIN_JOB + "download/", {"job_id": job_id}, path)

    @endpoint("GET", "/admin/v2/task/")
    def admin_list_tasks(
        self,
        *,
        id: int | None = None,
        source: str | None = None,
        version: str | None = None,
        name: str | None = None,
        owner: str | None = None,
        kind: str | None = None,
        max_number_of_results: int = 25,
    ) -> list[TaskInfo]:
        """Tasks with the workflows and projects that use them."""
        return self._transport.call(
            list[TaskInfo],
            "GET",
            "/admin/v2/task/",
            params={
                "id": id,
                "source": source,
                "version": version,
                "name": name,
                "owner": owner,
                "kind": kind,
                "max_number_of_results": max_number_of_results,
            },
        )

    @endpoint("POST", "/admin/v2/task/make-core/")
    def admin_make_tasks_core(self, task_ids: Sequence[int]) -> None:
        """Make the tasks core (fractal-server 2.26; refused when two would have the same
        name, package name and version, or one has such a core twin already)."""
        self._transport.do("POST", "/admin/v2/task/make-core/", body=list(task_ids))

    @endpoint("POST", "/admin/v2/task/make-not-core/")
    def admin_make_tasks_not_core(self, task_ids: Sequence[int]) -> None:
        """Make the tasks not core (fractal-server 2.26)."""
        self._transport.do("POST", "/admin/v2/task/make-not-core/", body=list(task_ids))
