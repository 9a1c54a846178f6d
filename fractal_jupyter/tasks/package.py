"""What a task package is: its name and version, its wheel and manifest, and the task
definitions its manifest makes."""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..schemas.task import TaskCreate
from ..schemas.task_collection import Manifest, TaskCollectPip
from .log import CollectionError

MANIFEST_FILE = "__FRACTAL_MANIFEST__.json"


def normalize_package_name(name: str) -> str:
    """PyPA's name normalisation, as fractal-server 2.6.4 applies it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def slugify_task_name(name: str) -> str:
    """The last part of a task's `source` (2.6.4: lower case, spaces become `_`)."""
    return name.replace(" ", "_").lower()


@dataclass
class PipPackage:
    """What a pip collection installs; `version` is known once the wheel is at hand.

    `owner` is the owner of the collected tasks: None (every user's jobs may run them) when an
    administrator collects, else the collecting user (see `services/task_trust.py`).
    """

    package: str
    name: str
    python_version: str
    interpreter: str
    owner: str | None
    extras: str | None = None
    version: str | None = None
    pins: dict[str, str] = field(default_factory=dict)
    # fractal-server 2.9+'s `pinned_package_versions_pre`: installed before the package
    # (`pins`, 2.6.4's `pinned_package_versions`, are its `_post`: applied after).
    pins_pre: dict[str, str] = field(default_factory=dict)
    wheel: Path | None = None

    @classmethod
    def from_request(
        cls, body: TaskCollectPip, python_version: str, interpreter: str, owner: str | None
    ) -> PipPackage:
        if body.is_wheel:
            wheel = Path(body.package)
            distribution, version = wheel.name.split("-")[:2]
            return cls(
                package=body.package,
                name=normalize_package_name(distribution),
                python_version=python_version,
                interpreter=interpreter,
                owner=owner,
                extras=body.package_extras,
                version=version,
                pins=dict(body.pinned_package_versions or {}),
                pins_pre=dict(body.pinned_package_versions_pre or {}),
                wheel=wheel,
            )
        return cls(
            package=body.package,
            name=normalize_package_name(body.package),
            python_version=python_version,
            interpreter=interpreter,
            owner=owner,
            extras=body.package_extras,
            version=body.package_version,
            pins=dict(body.pinned_package_versions or {}),
            pins_pre=dict(body.pinned_package_versions_pre or {}),
        )

    @property
    def package_source(self) -> str:
        """`pip_remote|pip_local:<name_with_underscores>:<version>:<extras>:py<X.Y>`."""
        kind = "pip_local" if self.wheel is not None else "pip_remote"
        parts = (
            kind,
            self.name.replace("-", "_"),
            self.version or "",
            self.extras or "",
            f"py{self.python_version}",
        )
        return ":".join(parts)

    @property
    def install_request(self) -> dict[str, Any]:
        """What decides the content of the venv: a folder is reused only for the same.

        A user's own collection names its owner: its tasks are trusted as that user's, so
        they never point into a folder that another user's collection left."""
        request: dict[str, Any] = {
            "package_source": self.package_source,
            "pinned_package_versions": self.pins,
        }
        if self.pins_pre:
            # (only when given: folders collected before keep matching their requests)
            request["pinned_package_versions_pre"] = self.pins_pre
        if self.owner is not None:
            request["owner"] = self.owner
        return request

    def requirement(self) -> str:
        extras = f"[{self.extras}]" if self.extras else ""
        if self.wheel is not None:
            return f"{self.wheel}{extras}"
        return f"{self.name}{extras}=={self.version}"


def read_manifest(text: str | bytes, where: str) -> Manifest:
    """A manifest from its JSON text; every problem is a CollectionError that says what."""
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise CollectionError(f"{where}: the manifest is not valid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise CollectionError(f"{where}: the manifest is not a JSON object")
    version = str(raw.get("manifest_version"))
    if version != "2":
        raise CollectionError(f"{where}: manifest version {version!r} not supported (only '2')")
    try:
        return Manifest.model_validate({**raw, "manifest_version": version})
    except ValidationError as error:
        raise CollectionError(f"{where}: invalid manifest: {error}") from None


def inspect_wheel(path: Path) -> tuple[str, Manifest]:
    """The version (from the file name) and the manifest of a wheel."""
    if not path.name.endswith(".whl"):
        raise CollectionError(f"Only wheel packages are supported in Fractal (given {path.name}).")
    if not path.is_file():
        raise CollectionError(f"{path} does not exist or is not a file")
    version = path.name.split("-")[1]
    try:
        with zipfile.ZipFile(path) as wheel:
            member = next((n for n in wheel.namelist() if MANIFEST_FILE in n), None)
            if member is None:
                raise CollectionError(f"{path.name} does not include {MANIFEST_FILE}")
            text = wheel.read(member)
    except zipfile.BadZipFile as error:
        raise CollectionError(f"{path.name} is not a valid wheel: {error}") from None
    return version, read_manifest(text, path.name)


def build_tasks(
    manifest: Manifest,
    package_source: str,
    python: Path | str,
    package_root: Path,
    version: str | None,
) -> list[TaskCreate]:
    """The tasks of a manifest: sources `<package_source>:<slug>`, commands
    `<python> <package_root>/<executable>`, the manifest's other fields kept."""
    tasks: list[TaskCreate] = []
    seen: set[str] = set()
    for entry in manifest.task_list:
        source = f"{package_source}:{slugify_task_name(entry.name)}"
        if source in seen:
            raise CollectionError(f"two tasks of the manifest have the source '{source}'")
        seen.add(source)
        fields: dict[str, Any] = {
            "name": entry.name,
            "source": source,
            "version": version,
            "input_types": entry.input_types,
            "output_types": entry.output_types,
            "docs_info": entry.docs_info,
            "docs_link": entry.docs_link,
            "type": entry.type,
            "category": entry.category,
            "modality": entry.modality,
            "tags": entry.tags,
            "authors": entry.authors or manifest.authors,
        }
        if manifest.has_args_schemas:
            fields["args_schema_version"] = manifest.args_schema_version
        for side in ("non_parallel", "parallel"):
            executable = getattr(entry, f"executable_{side}")
            if executable is None:
                continue
            fields[f"command_{side}"] = f"{python} {package_root / executable}"
            fields[f"meta_{side}"] = getattr(entry, f"meta_{side}")
            fields[f"args_schema_{side}"] = getattr(entry, f"args_schema_{side}")
        try:
            tasks.append(TaskCreate.model_validate(fields))
        except ValidationError as error:
            raise CollectionError(f"task '{entry.name}' of the manifest: {error}") from None
    return tasks


def check_executables(tasks: list[TaskCreate]) -> None:
    for task in tasks:
        for side in ("non_parallel", "parallel"):
            command = getattr(task, f"command_{side}")
            if command is not None and not Path(command.split()[1]).exists():
                raise CollectionError(
                    f"Task `{task.name}` has `command_{side}` pointing to missing file "
                    f"`{command.split()[1]}`."
                )
