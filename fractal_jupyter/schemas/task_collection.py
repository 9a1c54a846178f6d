"""Task collection: the manifest of a task package, the two collection requests, the state."""

from __future__ import annotations

import json
import os
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from ..commands import FORBIDDEN_COMMAND_CHARACTERS
from .common import (
    JsonObject,
    LenientRequestModel,
    NonEmptyStr,
    ResponseModel,
    Timestamp,
    TypeDict,
    check_dict_keys,
)
from .query import QueryModel
from .task import CatalogueFields, Command, HttpUrlText, MetaDict

# What reaches pip's command line must not be taken for one of its options ("--index-url=...").
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*$")
_PYTHON_VERSION = re.compile(r"^3\.\d{1,2}$")


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"'{value}' is not a valid Python package name")
    return value


def _check_version(value: str) -> str:
    if not _VERSION.match(value):
        raise ValueError(f"'{value}' is not a valid package version")
    return value


def _check_extras(value: str) -> str:
    for extra in value.split(","):
        _check_name(extra.strip())
    return value


def _check_python_version(value: str) -> str:
    if not _PYTHON_VERSION.match(value):
        raise ValueError(f"'{value}' is not a Python version like '3.11'")
    return value


def _check_pins(value: dict[str, str]) -> dict[str, str]:
    value = check_dict_keys(value)
    for name, version in value.items():
        _check_name(name)
        _check_version(version.strip())
    return {name: version.strip() for name, version in value.items()}


def _check_absolute(value: str) -> str:
    if not os.path.isabs(value):
        raise ValueError(f"'{value}' is not an absolute path")
    return value


def _check_import_name(value: str) -> str:
    value = value.replace(" ", "")
    if not value or FORBIDDEN_COMMAND_CHARACTERS.intersection(value) or "'" in value:
        raise ValueError(f"'{value}' is not a valid package name")
    return value


PackageVersion = Annotated[NonEmptyStr, AfterValidator(_check_version)]
Pins = Annotated[dict[str, str], AfterValidator(_check_pins)]
AbsolutePath = Annotated[NonEmptyStr, AfterValidator(_check_absolute)]


class TaskManifest(LenientRequestModel, CatalogueFields):
    """One task of a manifest (version 2), with the fields that current packages carry."""

    name: NonEmptyStr
    # Each becomes (part of) a command: held to the command rule before anything is installed.
    executable_non_parallel: Command | None = None
    executable_parallel: Command | None = None
    input_types: TypeDict = Field(default_factory=dict)
    output_types: TypeDict = Field(default_factory=dict)
    meta_non_parallel: MetaDict = Field(default_factory=dict)
    meta_parallel: MetaDict = Field(default_factory=dict)
    args_schema_non_parallel: JsonObject | None = None
    args_schema_parallel: JsonObject | None = None
    docs_info: str | None = None
    docs_link: HttpUrlText | None = None

    @model_validator(mode="after")
    def _check_executables(self) -> TaskManifest:
        if self.executable_non_parallel is None and self.executable_parallel is None:
            raise ValueError(
                f"task '{self.name}': `executable_non_parallel` and `executable_parallel` "
                "cannot be both missing"
            )
        for side in ("non_parallel", "parallel"):
            if getattr(self, f"executable_{side}") is not None:
                continue
            if getattr(self, f"meta_{side}"):
                raise ValueError(
                    f"task '{self.name}': `meta_{side}` must be empty without `executable_{side}`"
                )
            if getattr(self, f"args_schema_{side}") is not None:
                raise ValueError(
                    f"task '{self.name}': `args_schema_{side}` must be null without "
                    f"`executable_{side}`"
                )
        return self


class Manifest(LenientRequestModel):
    """`__FRACTAL_MANIFEST__.json`, version 2 (unknown keys are ignored, as 2.6.4 does)."""

    manifest_version: Literal["2"]
    task_list: list[TaskManifest]
    has_args_schemas: bool = False
    args_schema_version: NonEmptyStr | None = None
    authors: NonEmptyStr | None = None

    @model_validator(mode="after")
    def _check_args_schemas_are_present(self) -> Manifest:
        if not self.has_args_schemas:
            return self
        for task in self.task_list:
            for side in ("non_parallel", "parallel"):
                if (
                    getattr(task, f"executable_{side}") is not None
                    and getattr(task, f"args_schema_{side}") is None
                ):
                    raise ValueError(
                        f"the manifest has has_args_schemas=true, but task '{task.name}' "
                        f"has no args_schema_{side}"
                    )
        return self


class TaskCollectPip(LenientRequestModel):
    """`POST api/v2/task/collect/pip/`: a PyPI package (name) or a local wheel (its path)."""

    package: NonEmptyStr
    package_version: PackageVersion | None = None
    package_extras: Annotated[NonEmptyStr, AfterValidator(_check_extras)] | None = None
    python_version: Annotated[str, AfterValidator(_check_python_version)] | None = None
    # 2.6.4's pins: set after the package is installed (fractal-server 2.9+'s `_post`).
    pinned_package_versions: Pins | None = None
    # fractal-server 2.9+: installed before the package.
    pinned_package_versions_pre: Pins | None = None

    @model_validator(mode="after")
    def _check_package(self) -> TaskCollectPip:
        if self.is_wheel:
            if not self.package.endswith(".whl"):
                raise ValueError(f"Local-package path must be a wheel file (given {self.package}).")
            if not os.path.isabs(self.package):
                raise ValueError(f"Local-package path must be absolute: (given {self.package}).")
            if self.package_version is not None:
                raise ValueError("Cannot provide package version when package is a wheel file.")
            wheel_name = os.path.basename(self.package)
            parts = wheel_name.split("-")
            if len(parts) < 3:
                raise ValueError(f"'{wheel_name}' is not a wheel file name (name-version-...whl)")
            _check_name(parts[0])
            _check_version(parts[1])
        else:
            if self.package.endswith(".whl"):
                raise ValueError(
                    f"ERROR: package={self.package} ends with '.whl' but it is not the "
                    "absolute path to a wheel file."
                )
            _check_name(self.package)
        return self

    @property
    def is_wheel(self) -> bool:
        return "/" in self.package


class TaskCollectCustom(LenientRequestModel):
    """`POST api/v2/task/collect/custom/`: tasks of a package already installed somewhere."""

    manifest: Manifest
    python_interpreter: AbsolutePath
    source: NonEmptyStr
    package_root: AbsolutePath | None = None
    package_name: Annotated[str, AfterValidator(_check_import_name)] | None = None
    version: NonEmptyStr | None = None

    @model_validator(mode="after")
    def _one_of_root_and_name(self) -> TaskCollectCustom:
        if (self.package_root is None) == (self.package_name is None):
            raise ValueError("One and only one of `package_root` and `package_name` must be set")
        return self


class CollectionStateRead(ResponseModel):
    id: int
    data: dict[str, Any]
    timestamp: Timestamp


class CollectionStateQuery(QueryModel):
    verbose: bool = False


def _pins_json(value: str) -> dict[str, str]:
    """fractal-client 2.24 sends pins as the JSON text of an object `{name: version}`."""
    try:
        pins = json.loads(value)
    except ValueError:
        raise ValueError(f"'{value}' is not JSON (an object of package name: version)") from None
    if not isinstance(pins, dict) or not all(isinstance(v, str) for v in pins.values()):
        raise ValueError(f"'{value}' is not a JSON object of package name: version")
    return _check_pins(pins)


def _check_pins_json(value: str) -> str:
    """The form keeps the text (the document's type); `as_request` reads it."""
    _pins_json(value)
    return value


PinsJson = Annotated[str, AfterValidator(_check_pins_json)]
WheelFilePart = Annotated[
    str, Field(json_schema_extra={"contentMediaType": "application/octet-stream"})
]


class TaskCollectPipForm(LenientRequestModel):
    """`POST api/v2/task/collect/pip/` as a form (fractal-server 2.9+, fractal-client 2.24):
    a PyPI `package`, or a wheel uploaded as the form's `file` part. Values are text."""

    package: NonEmptyStr | None = None
    package_version: PackageVersion | None = None
    package_extras: Annotated[NonEmptyStr, AfterValidator(_check_extras)] | None = None
    python_version: Annotated[str, AfterValidator(_check_python_version)] | None = None
    pinned_package_versions_pre: PinsJson | None = None
    pinned_package_versions_post: PinsJson | None = None
    # The wheel, as a file part: a plain value of that name is refused (`_check_file`).
    file: WheelFilePart | None = None

    @field_validator("file")
    @classmethod
    def _check_file(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("`file` must be a file part of a multipart form (the wheel)")
        return value

    def as_request(self, package: str) -> TaskCollectPip:
        """The JSON request this form stands for (`package`: a name, or the stored wheel)."""
        return TaskCollectPip.model_validate(
            {
                "package": package,
                "package_version": self.package_version,
                "package_extras": self.package_extras,
                "python_version": self.python_version,
                "pinned_package_versions": _pins_json(self.pinned_package_versions_post)
                if self.pinned_package_versions_post
                else None,
                "pinned_package_versions_pre": _pins_json(self.pinned_package_versions_pre)
                if self.pinned_package_versions_pre
                else None,
            }
        )
