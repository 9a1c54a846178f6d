"""Client methods for task groups and their activities (fractal-server 2.7+ routes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..schemas.task_group import (
    TaskGroupActivityPage,
    TaskGroupActivityRead,
    TaskGroupPage,
    TaskGroupRead,
    TaskGroupReadSlim,
    TaskGroupReadSuperuser,
)
from .transport import ClientBase, endpoint, fields_given

GROUPS = "/api/v2/task-group/"
GROUP = GROUPS + "{task_group_id}/"
ACTIVITY = GROUPS + "activity/"
ADMIN_GROUPS = "/admin/v2/task-group/"
ADMIN_GROUP = ADMIN_GROUPS + "{task_group_id}/"


def _activity_filters(
    task_group_activity_id: int | None,
    taskgroupv2_id: int | None,
    pkg_name: str | None,
    status: str | None,
    action: str | None,
    timestamp_started_min: datetime | None,
) -> dict[str, Any]:
    return fields_given(
        task_group_activity_id=task_group_activity_id,
        taskgroupv2_id=taskgroupv2_id,
        pkg_name=pkg_name,
        status=status,
        action=action,
        timestamp_started_min=(
            timestamp_started_min.isoformat() if timestamp_started_min is not None else None
        ),
    )


class TaskGroupsMixin(ClientBase):
    @endpoint("GET", GROUPS)
    def list_task_groups(
        self, *, only_active: bool = False, only_owner: bool = False
    ) -> list[tuple[str, list[TaskGroupReadSlim]]]:
        """The task groups you may use, as (package name, its groups newest first) pairs."""
        return self._transport.call(
            list[tuple[str, list[TaskGroupReadSlim]]],
            "GET",
            GROUPS,
            params={"only_active": only_active, "only_owner": only_owner},
        )

    @endpoint("GET", GROUP)
    def get_task_group(self, task_group_id: int) -> TaskGroupRead:
        return self._transport.call(TaskGroupRead, "GET", GROUP, {"task_group_id": task_group_id})

    @endpoint("PATCH", GROUP)
    def share_task_group(self, task_group_id: int, user_group_id: int | None) -> TaskGroupRead:
        """Share your task group with a user group you belong to (None: make it private)."""
        return self._transport.call(
            TaskGroupRead,
            "PATCH",
            GROUP,
            {"task_group_id": task_group_id},
            body={"user_group_id": user_group_id},
        )

    @endpoint("POST", GROUP + "deactivate/")
    def deactivate_task_group(self, task_group_id: int) -> TaskGroupActivityRead:
        """Remove the group's venv (its pip freeze is kept); see `get_task_group_activity`."""
        return self._transport.call(
            TaskGroupActivityRead, "POST", GROUP + "deactivate/", {"task_group_id": task_group_id}
        )

    @endpoint("POST", GROUP + "reactivate/")
    def reactivate_task_group(self, task_group_id: int) -> TaskGroupActivityRead:
        """Rebuild the group's venv from its pip freeze, in the background."""
        return self._transport.call(
            TaskGroupActivityRead, "POST", GROUP + "reactivate/", {"task_group_id": task_group_id}
        )

    @endpoint("POST", GROUP + "delete/")
    def delete_task_group(self, task_group_id: int) -> TaskGroupActivityRead:
        """Delete the group's tasks, venv and files (refused while a workflow uses them)."""
        return self._transport.call(
            TaskGroupActivityRead, "POST", GROUP + "delete/", {"task_group_id": task_group_id}
        )

    @endpoint("GET", ACTIVITY)
    def list_task_group_activities(
        self,
        *,
        task_group_activity_id: int | None = None,
        taskgroupv2_id: int | None = None,
        pkg_name: str | None = None,
        status: str | None = None,
        action: str | None = None,
        timestamp_started_min: datetime | None = None,
    ) -> list[TaskGroupActivityRead]:
        """Your task-group activities (collections, deactivations...), newest first."""
        return self._transport.call(
            list[TaskGroupActivityRead],
            "GET",
            ACTIVITY,
            params=_activity_filters(
                task_group_activity_id,
                taskgroupv2_id,
                pkg_name,
                status,
                action,
                timestamp_started_min,
            ),
        )

    @endpoint("GET", ACTIVITY + "{task_group_activity_id}/")
    def get_task_group_activity(self, task_group_activity_id: int) -> TaskGroupActivityRead:
        """One activity, with its log so far."""
        return self._transport.call(
            TaskGroupActivityRead,
            "GET",
            ACTIVITY + "{task_group_activity_id}/",
            {"task_group_activity_id": task_group_activity_id},
        )

    # --- administrators --------------------------------------------------------------------

    @endpoint("GET", ADMIN_GROUPS)
    def admin_list_task_groups(self, *, page: int = 1, **filters: Any) -> TaskGroupPage:
        """Every task group; filters as the route's (`user_id`, `active`, `origin`, ...)."""
        return self._transport.call(
            TaskGroupPage, "GET", ADMIN_GROUPS, params={"page": page, **fields_given(**filters)}
        )

    @endpoint("GET", ADMIN_GROUP)
    def admin_get_task_group(self, task_group_id: int) -> TaskGroupReadSuperuser:
        return self._transport.call(
            TaskGroupReadSuperuser, "GET", ADMIN_GROUP, {"task_group_id": task_group_id}
        )

    @endpoint("PATCH", ADMIN_GROUP)
    def admin_share_task_group(
        self, task_group_id: int, user_group_id: int | None
    ) -> TaskGroupReadSuperuser:
        return self._transport.call(
            TaskGroupReadSuperuser,
            "PATCH",
            ADMIN_GROUP,
            {"task_group_id": task_group_id},
            body={"user_group_id": user_group_id},
        )

    @endpoint("POST", ADMIN_GROUP + "deactivate/")
    def admin_deactivate_task_group(self, task_group_id: int) -> TaskGroupActivityRead:
        return self._transport.call(
            TaskGroupActivityRead,
            "POST",
            ADMIN_GROUP + "deactivate/",
            {"task_group_id": task_group_id},
        )

    @endpoint("POST", ADMIN_GROUP + "reactivate/")
    def admin_reactivate_task_group(self, task_group_id: int) -> TaskGroupActivityRead:
        return self._transport.call(
            TaskGroupActivityRead,
            "POST",
            ADMIN_GROUP + "reactivate/",
            {"task_group_id": task_group_id},
        )

    @endpoint("POST", ADMIN_GROUP + "delete/")
    def admin_delete_task_group(self, task_group_id: int) -> TaskGroupActivityRead:
        return self._transport.call(
            TaskGroupActivityRead, "POST", ADMIN_GROUP + "delete/", {"task_group_id": task_group_id}
        )

    @endpoint("POST", ADMIN_GROUP + "make-core/")
    def admin_make_task_group_core(self, task_group_id: int) -> None:
        """Make every task of the group core (fractal-server 2.26; refused when another core
        task has the same name, package name and version)."""
        self._transport.do("POST", ADMIN_GROUP + "make-core/", {"task_group_id": task_group_id})

    @endpoint("POST", ADMIN_GROUP + "make-not-core/")
    def admin_make_task_group_not_core(self, task_group_id: int) -> None:
        """Make every task of the group not core (fractal-server 2.26)."""
        self._transport.do("POST", ADMIN_GROUP + "make-not-core/", {"task_group_id": task_group_id})

    @endpoint("GET", ADMIN_GROUPS + "activity/")
    def admin_list_task_group_activities(
        self, *, page: int = 1, **filters: Any
    ) -> TaskGroupActivityPage:
        """Every task-group activity; filters as the route's (`user_id`, `status`, ...)."""
        return self._transport.call(
            TaskGroupActivityPage,
            "GET",
            ADMIN_GROUPS + "activity/",
            params={"page": page, **fields_given(**filters)},
        )
