"""The one route table: it registers the handlers and generates the OpenAPI document.

Paths are fractal-server 2.6.4's, below `<base_url>fractal/`, with `{name}` for path ids.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated
from tornado import web

from . import (
    admin,
    auth,
    dataset,
    group,
    history,
    images,
    job,
    misc,
    project,
    task,
    task_collection,
    task_group,
    token,
    users,
    workflow,
)
from .dispatch import PREFIX

__all__ = ["PREFIX", "ROUTES", "Route", "tornado_handlers"]
PROJECT = "/api/v2/project/{project_id}"
DATASET = PROJECT + "/dataset/{dataset_id}"
WORKFLOW = PROJECT + "/workflow/{workflow_id}"


@dataclass(frozen=True)
class Route:
    path: str
    handler: type[web.RequestHandler]
    tag: str

    @property
    def pattern(self) -> str:
        return PREFIX + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path)


ROUTES: list[Route] = [
    Route("/api/alive/", misc.AliveHandler, "misc"),
    Route("/openapi.json", misc.OpenAPIHandler, "misc"),
    Route("/auth/current-user/", auth.CurrentUserHandler, "auth"),
    Route("/auth/current-user/settings/", auth.CurrentUserSettingsHandler, "auth"),
    Route("/auth/current-user/viewer-paths/", auth.ViewerPathsHandler, "auth"),
    Route("/auth/register/", auth.RegisterHandler, "auth"),
    Route("/auth/group-names/", auth.GroupNamesHandler, "auth"),
    Route("/auth/users/", users.UserListHandler, "users"),
    Route("/auth/users/{user_id}/", users.UserHandler, "users"),
    Route("/auth/users/{user_id}/settings/", users.UserSettingsHandler, "users"),
    Route("/auth/group/", group.GroupListHandler, "group"),
    Route("/auth/group/{group_id}/", group.GroupHandler, "group"),
    Route("/api/settings/", auth.SettingsHandler, "misc"),
    Route("/api/settings/widgets/", auth.WidgetSettingsHandler, "misc"),
    Route("/admin/v2/project/", admin.AdminProjectListHandler, "admin"),
    Route("/admin/v2/job/", admin.AdminJobListHandler, "admin"),
    Route("/admin/v2/job/{job_id}/", admin.AdminJobHandler, "admin"),
    Route("/admin/v2/job/{job_id}/stop/", admin.AdminJobStopHandler, "admin"),
    Route("/admin/v2/job/{job_id}/download/", admin.AdminJobDownloadHandler, "admin"),
    Route("/admin/v2/task/", admin.AdminTaskListHandler, "admin"),
    Route("/admin/v2/task/make-core/", admin.AdminTaskMakeCoreHandler, "admin"),
    Route("/admin/v2/task/make-not-core/", admin.AdminTaskMakeNotCoreHandler, "admin"),
    # fractal-server 2.7+ (shapes of 2.26.0)
    Route("/admin/v2/task-group/", task_group.AdminTaskGroupListHandler, "admin"),
    Route("/admin/v2/task-group/activity/", task_group.AdminTaskGroupActivityListHandler, "admin"),
    Route("/admin/v2/task-group/{task_group_id}/", task_group.AdminTaskGroupHandler, "admin"),
    Route(
        "/admin/v2/task-group/{task_group_id}/deactivate/",
        task_group.AdminTaskGroupDeactivateHandler,
        "admin",
    ),
    Route(
        "/admin/v2/task-group/{task_group_id}/reactivate/",
        task_group.AdminTaskGroupReactivateHandler,
        "admin",
    ),
    Route(
        "/admin/v2/task-group/{task_group_id}/delete/",
        task_group.AdminTaskGroupDeleteHandler,
        "admin",
    ),
    Route(
        "/admin/v2/task-group/{task_group_id}/make-core/",
        task_group.AdminTaskGroupMakeCoreHandler,
        "admin",
    ),
    Route(
        "/admin/v2/task-group/{task_group_id}/make-not-core/",
        task_group.AdminTaskGroupMakeNotCoreHandler,
        "admin",
    ),
    Route("/auth/token/login/", token.TokenLoginHandler, "auth"),
    Route("/auth/token/logout/", token.TokenLogoutHandler, "auth"),
    Route("/api/v2/project/", project.ProjectListHandler, "project"),
    Route(PROJECT + "/", project.ProjectHandler, "project"),
    Route("/api/v2/dataset/", dataset.UserDatasetListHandler, "dataset"),
    Route(PROJECT + "/dataset/", dataset.DatasetListHandler, "dataset"),
    Route(PROJECT + "/dataset/import/", dataset.DatasetImportHandler, "dataset"),
    Route(DATASET + "/", dataset.DatasetHandler, "dataset"),
    Route(DATASET + "/export/", dataset.DatasetExportHandler, "dataset"),
    Route(DATASET + "/images/", images.ImageListHandler, "images"),
    Route(DATASET + "/images/query/", images.ImageQueryHandler, "images"),
    Route("/api/v2/task/", task.TaskListHandler, "task"),
    Route("/api/v2/task/{task_id}/", task.TaskHandler, "task"),
    Route("/api/v2/task/collect/pip/", task_collection.TaskCollectPipHandler, "task"),
    Route("/api/v2/task/collect/custom/", task_collection.TaskCollectCustomHandler, "task"),
    Route("/api/v2/task/collect/{state_id}/", task_collection.CollectionStateHandler, "task"),
    # fractal-server 2.7+ (shapes of 2.26.0)
    Route("/api/v2/task-group/", task_group.TaskGroupListHandler, "task group"),
    Route("/api/v2/task-group/activity/", task_group.TaskGroupActivityListHandler, "task group"),
    Route(
        "/api/v2/task-group/activity/{task_group_activity_id}/",
        task_group.TaskGroupActivityHandler,
        "task group",
    ),
    Route("/api/v2/task-group/{task_group_id}/", task_group.TaskGroupHandler, "task group"),
    Route(
        "/api/v2/task-group/{task_group_id}/deactivate/",
        task_group.TaskGroupDeactivateHandler,
        "task group",
    ),
    Route(
        "/api/v2/task-group/{task_group_id}/reactivate/",
        task_group.TaskGroupReactivateHandler,
        "task group",
    ),
    Route(
        "/api/v2/task-group/{task_group_id}/delete/",
        task_group.TaskGroupDeleteHandler,
        "task group",
    ),
    Route("/api/v2/workflow/", workflow.UserWorkflowListHandler, "workflow"),
    Route(PROJECT + "/workflow/", workflow.WorkflowListHandler, "workflow"),
    Route(PROJECT + "/workflow/import/", workflow.WorkflowImportHandler, "workflow"),
    Route(WORKFLOW + "/", workflow.WorkflowHandler, "workflow"),
    Route(WORKFLOW + "/export/", workflow.WorkflowExportHandler, "workflow"),
    Route(WORKFLOW + "/job/", workflow.WorkflowJobListHandler, "job"),
    Route(PROJECT + "/job/submit/", job.JobSubmitHandler, "job"),
    Route(PROJECT + "/job/", job.ProjectJobListHandler, "job"),
    Route(PROJECT + "/job/{job_id}/", job.JobHandler, "job"),
    Route(PROJECT + "/job/{job_id}/stop/", job.JobStopHandler, "job"),
    Route(PROJECT + "/job/{job_id}/download/", job.JobDownloadHandler, "job"),
    Route(PROJECT + "/job/{job_id}/progress/", job.JobProgressHandler, "job"),
    Route("/api/v2/job/", job.UserJobListHandler, "job"),
    Route(PROJECT + "/status/", job.StatusHandler, "status"),
    # fractal-server 2.14+ (shapes of 2.26.0)
    Route(PROJECT + "/status/run/", history.HistoryRunListHandler, "history"),
    Route(
        PROJECT + "/status/run/{history_run_id}/units/", history.HistoryUnitListHandler, "history"
    ),
    Route(PROJECT + "/status/images/", history.StatusImagesHandler, "history"),
    Route(PROJECT + "/status/image-log/", history.ImageLogHandler, "history"),
    Route(PROJECT + "/status/unit-log/", history.UnitLogHandler, "history"),
    Route(PROJECT + "/latest-job/", history.LatestJobHandler, "job"),
    Route(DATASET + "/images/non-processed/", history.NonProcessedImagesHandler, "images"),
    Route(DATASET + "/images/verify-unique-types/", history.VerifyUniqueTypesHandler, "images"),
    Route("/api/v2/job/squeue/", history.SqueueHandler, "job"),
    Route(WORKFLOW + "/wftask/", workflow.WorkflowTaskListHandler, "workflowtask"),
    # Before the {workflow_task_id} pattern, which would take "replace-task" for an id.
    Route(WORKFLOW + "/wftask/replace-task/", workflow.ReplaceTaskHandler, "workflowtask"),
    Route(WORKFLOW + "/wftask/{workflow_task_id}/", workflow.WorkflowTaskHandler, "workflowtask"),
    Route(
        WORKFLOW + "/version-update-candidates/",
        workflow.VersionUpdateCandidatesHandler,
        "workflowtask",
    ),
]


class AddSlashHandler(web.RequestHandler):
    """fractal-server answers a path without its trailing slash with a 307 to the slash form,
    whatever the method (a 307 makes clients repeat the method and the body there)."""

    @allow_unauthenticated
    def _redirect(self, path: str) -> None:
        query = f"?{self.request.query}" if self.request.query else ""
        self.redirect(f"{self.request.path}/{query}", status=307)

    get = post = patch = put = delete = _redirect

    def check_xsrf_cookie(self) -> None:
        """Nothing is done here; the request repeated at the slash form is checked there.

        (Tornado's check would refuse a token-authenticated POST with an HTML 403, since
        only Jupyter's handlers know that a token request needs no XSRF cookie.)
        """

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"detail": self._reason}))


def tornado_handlers() -> list[tuple[str, type[web.RequestHandler]]]:
    """Handlers for `ExtensionApp.handlers` (it puts the server's base_url in front)."""
    handlers: list[tuple[str, type[web.RequestHandler]]] = [
        (route.pattern, route.handler) for route in ROUTES
    ]
    # Literal "/openapi.json" has no slash form; everything else may be asked for without one.
    handlers.append((PREFIX + r"/((?:api|auth|admin)/.*[^/])", AddSlashHandler))
    return handlers
