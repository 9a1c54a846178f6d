from __future__ import annotations

from collections.abc import Sequence

from ..db.models import Project
from ..schemas.project import ProjectCreate, ProjectRead, ProjectUpdate
from ..services import project
from .base import FractalHandler, operation


class ProjectListHandler(FractalHandler):
    @operation("The caller's projects", response=list[ProjectRead])
    async def get(self) -> Sequence[Project]:
        return await project.list_projects(self.db_session, self.user)

    @operation("Create a project", body=ProjectCreate, response=ProjectRead, status=201)
    async def post(self, body: ProjectCreate) -> Project:
        return await project.create_project(self.db_session, self.user, body)


class ProjectHandler(FractalHandler):
    @operation("One project", response=ProjectRead)
    async def get(self, project_id: int) -> Project:
        return await project.get_project(self.db_session, self.user, project_id)

    @operation("Rename a project", body=ProjectUpdate, response=ProjectRead)
    async def patch(self, project_id: int, body: ProjectUpdate) -> Project:
        return await project.update_project(self.db_session, self.user, project_id, body)

    @operation("Delete a project, its datasets and their images", status=204)
    async def delete(self, project_id: int) -> None:
        await project.delete_project(self.db_session, self.user, project_id)
