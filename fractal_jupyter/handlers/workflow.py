from __future__ import annotations

from collections.abc import Sequence

from pydantic import RootModel

from ..db.models import Workflow, WorkflowTask
from ..errors import Unprocessable
from ..schemas.job import JobRead
from ..schemas.query import ReplaceTaskQuery, WorkflowTaskAddQuery
from ..schemas.workflow import (
    TaskVersionRead,
    WorkflowCreate,
    WorkflowExport,
    WorkflowImport,
    WorkflowRead,
    WorkflowReadWithWarnings,
    WorkflowTaskCreate,
    WorkflowTaskCreateItem,
    WorkflowTaskRead,
    WorkflowTaskReplace,
    WorkflowTaskReplaced,
    WorkflowTaskUpdate,
    WorkflowUpdate,
)
from ..services import job, workflow, workflowtask
from .base import FractalHandler, operation


class WorkflowListHandler(FractalHandler):
    @operation("A project's workflows", response=list[WorkflowRead])
    async def get(self, project_id: int) -> Sequence[Workflow]:
        return await workflow.list_project_workflows(self.db_session, self.user, project_id)

    @operation("Create an empty workflow", body=WorkflowCreate, response=WorkflowRead, status=201)
    async def post(self, project_id: int, body: WorkflowCreate) -> Workflow:
        return await workflow.create_workflow(self.db_session, self.user, project_id, body)


class UserWorkflowListHandler(FractalHandler):
    @operation("The workflows of all the caller's projects", response=list[WorkflowRead])
    async def get(self) -> Sequence[Workflow]:
        return await workflow.list_user_workflows(self.db_session, self.user)


class WorkflowHandler(FractalHandler):
    @operation("One workflow with its tasks", response=WorkflowRead)
    async def get(self, project_id: int, workflow_id: int) -> Workflow:
        return await workflow.get_workflow(self.db_session, self.user, project_id, workflow_id)

    @operation(
        "Rename a workflow, change its description and/or reorder its tasks",
        body=WorkflowUpdate,
        response=WorkflowRead,
    )
    async def patch(self, project_id: int, workflow_id: int, body: WorkflowUpdate) -> Workflow:
        return await workflow.update_workflow(
            self.db_session, self.user, project_id, workflow_id, body
        )

    @operation("Delete a workflow and its tasks", status=204)
    async def delete(self, project_id: int, workflow_id: int) -> None:
        await workflow.delete_workflow(self.db_session, self.user, project_id, workflow_id)


class WorkflowExportHandler(FractalHandler):
    @operation(
        "A workflow without ids, tasks named by source and by package, version and name",
        response=WorkflowExport,
    )
    async def get(self, project_id: int, workflow_id: int) -> WorkflowExport:
        return await workflow.export_workflow(self.db_session, self.user, project_id, workflow_id)


class WorkflowImportHandler(FractalHandler):
    @operation(
        "Create a workflow from an export (tasks by source, or by package, version and name)",
        body=WorkflowImport,
        response=WorkflowReadWithWarnings,
        status=201,
    )
    async def post(self, project_id: int, body: WorkflowImport) -> WorkflowReadWithWarnings:
        return await workflow.import_workflow(
            self.db_session, self.user, project_id, body, self.fractal.admin_users
        )


class WorkflowJobListHandler(FractalHandler):
    @operation("The jobs of a workflow", response=list[JobRead])
    async def get(self, project_id: int, workflow_id: int) -> list[JobRead]:
        return await job.list_workflow_jobs(self.db_session, self.user, project_id, workflow_id)


class WorkflowTaskListHandler(FractalHandler):
    @operation(
        "Add a task to a workflow (2.6.4: `task_id` in the query, an object body); or several "
        "(2.26: a list body, each with its `task_id`, inserted at `order`)",
        query=WorkflowTaskAddQuery,
        body=WorkflowTaskCreate,
        list_body=WorkflowTaskCreateItem,
        response=WorkflowTaskRead | list[WorkflowTaskRead],
        status=201,
    )
    async def post(
        self,
        project_id: int,
        workflow_id: int,
        query: WorkflowTaskAddQuery,
        body: WorkflowTaskCreate | RootModel[list[WorkflowTaskCreateItem]],
    ) -> WorkflowTask | list[WorkflowTask]:
        admin_users = self.fractal.admin_users
        if isinstance(body, RootModel):
            return await workflowtask.create_workflow_tasks(
                self.db_session,
                self.user,
                project_id,
                workflow_id,
                body.root,
                query.order,
                admin_users,
            )
        if query.task_id is None:
            missing = {"loc": ["query", "task_id"], "msg": "Field required", "type": "missing"}
            raise Unprocessable([missing])
        return await workflowtask.create_workflow_task(
            self.db_session, self.user, project_id, workflow_id, query.task_id, body, admin_users
        )


class WorkflowTaskHandler(FractalHandler):
    @operation("One task of a workflow", response=WorkflowTaskRead)
    async def get(self, project_id: int, workflow_id: int, workflow_task_id: int) -> WorkflowTask:
        return await workflowtask.get_workflow_task(
            self.db_session, self.user, project_id, workflow_id, workflow_task_id
        )

    @operation(
        "Replace a workflow task's arguments, meta or input filters",
        body=WorkflowTaskUpdate,
        response=WorkflowTaskRead,
    )
    async def patch(
        self, project_id: int, workflow_id: int, workflow_task_id: int, body: WorkflowTaskUpdate
    ) -> WorkflowTask:
        return await workflowtask.update_workflow_task(
            self.db_session, self.user, project_id, workflow_id, workflow_task_id, body
        )

    @operation("Remove a task from a workflow", status=204)
    async def delete(self, project_id: int, workflow_id: int, workflow_task_id: int) -> None:
        await workflowtask.delete_workflow_task(
            self.db_session, self.user, project_id, workflow_id, workflow_task_id
        )


class VersionUpdateCandidatesHandler(FractalHandler):
    @operation(
        "Per task of the workflow, the newer versions of it (same package and name) that the "
        "caller may run",
        response=list[list[TaskVersionRead]],
    )
    async def get(self, project_id: int, workflow_id: int) -> list[list[TaskVersionRead]]:
        return await workflowtask.version_update_candidates(
            self.db_session, self.user, project_id, workflow_id, self.fractal.admin_users
        )


class ReplaceTaskHandler(FractalHandler):
    @operation(
        "Replace a workflow task's task by another version; `dropped_arguments` lists the old "
        "arguments the new task's schema refuses",
        query=ReplaceTaskQuery,
        body=WorkflowTaskReplace,
        response=WorkflowTaskReplaced,
        status=201,
    )
    async def post(
        self, project_id: int, workflow_id: int, query: ReplaceTaskQuery, body: WorkflowTaskReplace
    ) -> WorkflowTaskReplaced:
        return await workflowtask.replace_workflow_task(
            self.db_session,
            self.user,
            project_id,
            workflow_id,
            query.workflow_task_id,
            query.task_id,
            body,
            self.fractal.admin_users,
        )
