"""Client methods for the task catalogue, workflows and their tasks."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import EllipsisType
from typing import Any

from ..schemas.task import TaskCreate, TaskRead, TaskUpdate
from ..schemas.task_collection import (
    CollectionStateRead,
    TaskCollectCustom,
)
from ..schemas.task_group import TaskGroupActivityRead
from ..schemas.workflow import (
    TaskVersionRead,
    WorkflowExport,
    WorkflowImport,
    WorkflowRead,
    WorkflowReadWithWarnings,
    WorkflowTaskRead,
    WorkflowTaskReplaced,
)
from .data import PROJECT, FiltersLike
from .transport import ClientBase, changes_body, endpoint, fields_given

TASK = "/api/v2/task/{task_id}/"
WORKFLOW = PROJECT + "workflow/{workflow_id}/"
WORKFLOW_TASK = WORKFLOW + "wftask/{workflow_task_id}/"


class WorkflowsMixin(ClientBase):
    # --- tasks -----------------------------------------------------------------------------

    @endpoint("GET", "/api/v2/task/")
    def list_tasks(
        self, args_schema_parallel: bool = True, args_schema_non_parallel: bool = True
    ) -> list[TaskRead]:
        """The task catalogue (leave the argument schemas out for a lighter answer)."""
        return self._transport.call(
            list[TaskRead],
            "GET",
            "/api/v2/task/",
            params={
                "args_schema_parallel": args_schema_parallel,
                "args_schema_non_parallel": args_schema_non_parallel,
            },
        )

    @endpoint("POST", "/api/v2/task/")
    def create_task(
        self,
        task: TaskCreate | Mapping[str, Any],
        *,
        private: bool = False,
        user_group_id: int | None = None,
    ) -> TaskRead:
        """Register a task (fields as in a task manifest, plus `name`, `source`, commands), in
        a task group of its own: private, or shared with `user_group_id` (one you are in)."""
        params = {"private": private, **fields_given(user_group_id=user_group_id)}
        return self._transport.call(TaskRead, "POST", "/api/v2/task/", params=params, body=task)

    @endpoint("GET", TASK)
    def get_task(self, task_id: int) -> TaskRead:
        return self._transport.call(TaskRead, "GET", TASK, {"task_id": task_id})

    @endpoint("PATCH", TASK)
    def update_task(
        self, task_id: int, changes: TaskUpdate | Mapping[str, Any] | None = None, **fields: Any
    ) -> TaskRead:
        """Change a task: `update_task(7, name="new")` or `update_task(7, TaskUpdate(...))`."""
        body = changes_body(changes, fields)
        return self._transport.call(TaskRead, "PATCH", TASK, {"task_id": task_id}, body=body)

    @endpoint("DELETE", TASK)
    def delete_task(self, task_id: int) -> None:
        self._transport.do("DELETE", TASK, {"task_id": task_id})

    # --- task collection -------------------------------------------------------------------

    @endpoint("POST", "/api/v2/task/collect/pip/")
    def collect_tasks_pip(
        self,
        package: str,
        *,
        package_version: str | None = None,
        package_extras: str | None = None,
        python_version: str | None = None,
        pinned_package_versions: Mapping[str, str] | None = None,
        pinned_package_versions_pre: Mapping[str, str] | None = None,
        private: bool = False,
        user_group_id: int | None = None,
    ) -> CollectionStateRead:
        """Install a task package (a PyPI name or a wheel's path) in its own venv and register
        its tasks, in the background: follow it with `get_collection_state` (`data.status`).

        `pinned_package_versions_pre` are installed before the package,
        `pinned_package_versions` after it; `private` / `user_group_id`: who the new task
        group is shared with (none / that user group of yours)."""
        body = fields_given(
            package=package,
            package_version=package_version,
            package_extras=package_extras,
            python_version=python_version,
            pinned_package_versions=None
            if pinned_package_versions is None
            else dict(pinned_package_versions),
            pinned_package_versions_pre=None
            if pinned_package_versions_pre is None
            else dict(pinned_package_versions_pre),
        )
        return self._transport.call(
            CollectionStateRead,
            "POST",
            "/api/v2/task/collect/pip/",
            body=body,
            params=_sharing(private, user_group_id),
        )

    # The route of `collect_tasks_pip` (declared there), with a form instead of JSON.
    def upload_task_wheel(
        self,
        wheel: str | os.PathLike[str],
        *,
        package_extras: str | None = None,
        python_version: str | None = None,
        pinned_package_versions: Mapping[str, str] | None = None,
        pinned_package_versions_pre: Mapping[str, str] | None = None,
        private: bool = False,
        user_group_id: int | None = None,
    ) -> TaskGroupActivityRead:
        """Upload a wheel from this machine (the server need not see its path) and collect
        it in the background: follow it with `get_task_group_activity(<answer>.id)`. The
        other arguments: `collect_tasks_pip`'s."""
        path = Path(wheel)
        form = fields_given(
            package_extras=package_extras,
            python_version=python_version,
            pinned_package_versions_post=None
            if pinned_package_versions is None
            else json.dumps(dict(pinned_package_versions)),
            pinned_package_versions_pre=None
            if pinned_package_versions_pre is None
            else json.dumps(dict(pinned_package_versions_pre)),
        )
        return self._transport.call(
            TaskGroupActivityRead,
            "POST",
            "/api/v2/task/collect/pip/",
            params=_sharing(private, user_group_id),
            form=form,
            files={"file": (path.name, path.read_bytes(), "application/zip")},
        )

    @endpoint("POST", "/api/v2/task/collect/custom/")
    def collect_tasks_custom(
        self,
        collection: TaskCollectCustom | Mapping[str, Any],
        *,
        private: bool = False,
        user_group_id: int | None = None,
    ) -> list[TaskRead]:
        """Register the tasks of a package installed already (`manifest`, `python_interpreter`,
        `source`, and `package_root` or `package_name`); sharing as `collect_tasks_pip`."""
        return self._transport.call(
            list[TaskRead],
            "POST",
            "/api/v2/task/collect/custom/",
            body=collection,
            params=_sharing(private, user_group_id),
        )

    @endpoint("GET", "/api/v2/task/collect/{state_id}/")
    def get_collection_state(self, state_id: int, verbose: bool = False) -> CollectionStateRead:
        """A task collection's state; with `verbose`, its log so far."""
        return self._transport.call(
            CollectionStateRead,
            "GET",
            "/api/v2/task/collect/{state_id}/",
            {"state_id": state_id},
            params={"verbose": verbose},
        )

    # --- workflows -------------------------------------------------------------------------

    @endpoint("GET", "/api/v2/workflow/")
    def list_user_workflows(self) -> list[WorkflowRead]:
        """The workflows of all the caller's projects."""
        return self._transport.call(list[WorkflowRead], "GET", "/api/v2/workflow/")

    @endpoint("GET", PROJECT + "workflow/")
    def list_workflows(self, project_id: int) -> list[WorkflowRead]:
        return self._transport.call(
            list[WorkflowRead], "GET", PROJECT + "workflow/", {"project_id": project_id}
        )

    @endpoint("POST", PROJECT + "workflow/")
    def create_workflow(
        self, project_id: int, name: str, description: str | None = None
    ) -> WorkflowRead:
        """An empty workflow (with a `description`, when given); add tasks with
        `create_workflow_task`."""
        return self._transport.call(
            WorkflowRead,
            "POST",
            PROJECT + "workflow/",
            {"project_id": project_id},
            body=fields_given(name=name, description=description),
        )

    @endpoint("POST", PROJECT + "workflow/import/")
    def import_workflow(
        self, project_id: int, workflow: WorkflowImport | WorkflowExport | Mapping[str, Any]
    ) -> WorkflowReadWithWarnings:
        """Create a workflow from an export: tasks are found by their `source`, or by
        `pkg_name`, `version` and `name` (the newest version when that one is not here: each
        task's `warning` says so)."""
        return self._transport.call(
            WorkflowReadWithWarnings,
            "POST",
            PROJECT + "workflow/import/",
            {"project_id": project_id},
            body=workflow,
        )

    @endpoint("GET", WORKFLOW)
    def get_workflow(self, project_id: int, workflow_id: int) -> WorkflowRead:
        """A workflow with its task list, in order."""
        return self._transport.call(
            WorkflowRead, "GET", WORKFLOW, {"project_id": project_id, "workflow_id": workflow_id}
        )

    @endpoint("PATCH", WORKFLOW)
    def update_workflow(
        self,
        project_id: int,
        workflow_id: int,
        *,
        name: str | None = None,
        reordered_workflowtask_ids: Sequence[int] | None = None,
        description: str | EllipsisType | None = ...,
    ) -> WorkflowRead:
        """Rename a workflow, change its description (None clears it; left out, it is kept)
        and/or give the new order of all its workflow task ids."""
        order = None if reordered_workflowtask_ids is None else list(reordered_workflowtask_ids)
        body = fields_given(name=name, reordered_workflowtask_ids=order)
        if description is not ...:
            body["description"] = description
        return self._transport.call(
            WorkflowRead,
            "PATCH",
            WORKFLOW,
            {"project_id": project_id, "workflow_id": workflow_id},
            body=body,
        )

    @endpoint("DELETE", WORKFLOW)
    def delete_workflow(self, project_id: int, workflow_id: int) -> None:
        self._transport.do(
            "DELETE", WORKFLOW, {"project_id": project_id, "workflow_id": workflow_id}
        )

    @endpoint("GET", WORKFLOW + "export/")
    def export_workflow(self, project_id: int, workflow_id: int) -> WorkflowExport:
        """The workflow without ids, its tasks named by source and by package, version and
        name (for `import_workflow`, here or on another server)."""
        return self._transport.call(
            WorkflowExport,
            "GET",
            WORKFLOW + "export/",
            {"project_id": project_id, "workflow_id": workflow_id},
        )

    @endpoint("GET", WORKFLOW + "version-update-candidates/")
    def version_update_candidates(
        self, project_id: int, workflow_id: int
    ) -> list[list[TaskVersionRead]]:
        """Per task of the workflow, in order: the newer versions of it you may run."""
        return self._transport.call(
            list[list[TaskVersionRead]],
            "GET",
            WORKFLOW + "version-update-candidates/",
            {"project_id": project_id, "workflow_id": workflow_id},
        )

    # --- workflow tasks --------------------------------------------------------------------

    @endpoint("POST", WORKFLOW + "wftask/replace-task/")
    def replace_workflow_task(
        self,
        project_id: int,
        workflow_id: int,
        workflow_task_id: int,
        task_id: int,
        *,
        args_non_parallel: Mapping[str, Any] | None = None,
        args_parallel: Mapping[str, Any] | None = None,
    ) -> WorkflowTaskReplaced:
        """Put task `task_id` (another version) in place of a workflow task. Arguments not
        given are kept where the new schema accepts them; `dropped_arguments` lists the rest."""
        body = fields_given(args_non_parallel=args_non_parallel, args_parallel=args_parallel)
        return self._transport.call(
            WorkflowTaskReplaced,
            "POST",
            WORKFLOW + "wftask/replace-task/",
            {"project_id": project_id, "workflow_id": workflow_id},
            body=body,
            params={"workflow_task_id": workflow_task_id, "task_id": task_id},
        )

    @endpoint("POST", WORKFLOW + "wftask/")
    def create_workflow_task(
        self,
        project_id: int,
        workflow_id: int,
        task_id: int,
        *,
        args_non_parallel: Mapping[str, Any] | None = None,
        args_parallel: Mapping[str, Any] | None = None,
        meta_non_parallel: Mapping[str, Any] | None = None,
        meta_parallel: Mapping[str, Any] | None = None,
        input_filters: FiltersLike | None = None,
        order: int | None = None,
    ) -> WorkflowTaskRead:
        """Add task `task_id` to a workflow (at its end unless `order` says where)."""
        body = fields_given(
            args_non_parallel=args_non_parallel,
            args_parallel=args_parallel,
            meta_non_parallel=meta_non_parallel,
            meta_parallel=meta_parallel,
            input_filters=input_filters,
            order=order,
        )
        return self._transport.call(
            WorkflowTaskRead,
            "POST",
            WORKFLOW + "wftask/",
            {"project_id": project_id, "workflow_id": workflow_id},
            params={"task_id": int(task_id)},
            body=body,
        )

    @endpoint("GET", WORKFLOW_TASK)
    def get_workflow_task(
        self, project_id: int, workflow_id: int, workflow_task_id: int
    ) -> WorkflowTaskRead:
        return self._transport.call(
            WorkflowTaskRead,
            "GET",
            WORKFLOW_TASK,
            {
                "project_id": project_id,
                "workflow_id": workflow_id,
                "workflow_task_id": workflow_task_id,
            },
        )

    @endpoint("PATCH", WORKFLOW_TASK)
    def update_workflow_task(
        self,
        project_id: int,
        workflow_id: int,
        workflow_task_id: int,
        *,
        args_non_parallel: Mapping[str, Any] | None = None,
        args_parallel: Mapping[str, Any] | None = None,
        meta_non_parallel: Mapping[str, Any] | None = None,
        meta_parallel: Mapping[str, Any] | None = None,
        input_filters: FiltersLike | None = None,
    ) -> WorkflowTaskRead:
        """Replace what is given (each given argument dict replaces the stored one whole)."""
        body = fields_given(
            args_non_parallel=args_non_parallel,
            args_parallel=args_parallel,
            meta_non_parallel=meta_non_parallel,
            meta_parallel=meta_parallel,
            input_filters=input_filters,
        )
        return self._transport.call(
            WorkflowTaskRead,
            "PATCH",
            WORKFLOW_TASK,
            {
                "project_id": project_id,
                "workflow_id": workflow_id,
                "workflow_task_id": workflow_task_id,
            },
            body=body,
        )

    @endpoint("DELETE", WORKFLOW_TASK)
    def delete_workflow_task(
        self, project_id: int, workflow_id: int, workflow_task_id: int
    ) -> None:
        self._transport.do(
            "DELETE",
            WORKFLOW_TASK,
            {
                "project_id": project_id,
                "workflow_id": workflow_id,
                "workflow_task_id": workflow_task_id,
            },
        )


def _sharing(private: bool, user_group_id: int | None) -> dict[str, Any]:
    """The query of the routes that make a task group: only what differs from the default
    (a 2.6.4 server gets the same request as before)."""
    return fields_given(private=private or None, user_group_id=user_group_id)
