"""Task collection from a form (fractal-server 2.9+, fractal-client 2.24's `task collect`):
a PyPI name, or a wheel uploaded in the request.

An uploaded wheel is checked (its file name, a zip archive with a `.dist-info/METADATA`)
before anything is written, then kept where the collection installs it from and where a
later reinstall finds it again: `<tasks_dir>/.fractal/.wheels/<sha256 of the content,
16 hex digits>/<file name>` (the same wheel uploaded twice is one file). The collection
itself is the JSON request's (`task_collection.start_collection`) with that path as the
local wheel.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import Unprocessable, validation_detail
from ..file_modes import make_shared_dir
from ..schemas.task_collection import TaskCollectPipForm
from ..schemas.task_group import TaskGroupActivityRead
from .task_collection import TaskCollector, start_collection
from .task_group import activity_read
from .users import CurrentUser

WHEELS_SUBDIR = ".wheels"
_WHEEL_NAME = re.compile(r"^[A-Za-z0-9_.+!-]+\.whl$")


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    content: bytes


def check_wheel(upload: UploadedFile) -> None:
    """422 unless `upload` is a wheel: its name (`<name>-<version>-...whl`, no folder) and
    its content (a zip archive holding `<name>-<version>.dist-info/METADATA`)."""
    name = upload.filename
    if not _WHEEL_NAME.match(name) or name.startswith("."):
        raise Unprocessable(
            f"The uploaded file '{name}' is not named like a wheel "
            "(<name>-<version>-<tags>.whl, without folders)."
        )
    if len(name.split("-")) < 3:
        raise Unprocessable(f"'{name}' is not a wheel file name (name-version-...whl)")
    try:
        with zipfile.ZipFile(io.BytesIO(upload.content)) as archive:
            members = archive.namelist()
    except zipfile.BadZipFile:
        raise Unprocessable(
            f"The uploaded file '{name}' is not a wheel: it is not a zip archive."
        ) from None
    if not any(re.fullmatch(r"[^/]+\.dist-info/METADATA", member) for member in members):
        raise Unprocessable(
            f"The uploaded file '{name}' is not a wheel: it has no <name>.dist-info/METADATA."
        )


def wheel_path(collector: TaskCollector, upload: UploadedFile) -> Path:
    digest = hashlib.sha256(upload.content).hexdigest()[:16]
    return collector.public_dir / WHEELS_SUBDIR / digest / upload.filename


def store_wheel(path: Path, upload: UploadedFile) -> None:
    """Write the wheel (once: an identical upload is there already), whole or not at all."""
    if path.is_file():
        return
    with contextlib.suppress(FileExistsError):
        make_shared_dir(path.parent)  # (and the missing folders above it)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_bytes(upload.content)
    os.chmod(partial, 0o644)
    partial.replace(path)


async def start_form_collection(
    session: AsyncSession,
    collector: TaskCollector,
    user: CurrentUser,
    form: TaskCollectPipForm,
    upload: UploadedFile | None,
    *,
    private: bool = False,
    user_group_id: int | None = None,
) -> TaskGroupActivityRead:
    """Check the form and the wheel, start the collection, store the wheel (before the
    transaction commits, which starts the background work)."""
    if upload is not None and form.package is not None:
        raise Unprocessable("Give a PyPI name as `package` or a wheel as `file`, not both.")
    if upload is None and form.package is None:
        raise Unprocessable("The form needs `package` (a PyPI name) or `file` (a wheel).")
    path = None
    if upload is not None:
        check_wheel(upload)
        path = wheel_path(collector, upload)
    try:
        request = form.as_request(str(path) if path is not None else str(form.package))
    except ValidationError as error:
        raise Unprocessable(validation_detail(error, "body")) from None
    _, activity = await start_collection(
        session, collector, user, request, private=private, user_group_id=user_group_id
    )
    if upload is not None and path is not None:
        store_wheel(path, upload)
    await session.flush()
    return activity_read(activity)
