from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from ..commands import split_command
from .common import (
    MAX_NAME_CHARS,
    JsonObject,
    LenientRequestModel,
    NonEmptyStr,
    RequestModel,
    ResponseModel,
    TypeDict,
    check_dict_keys,
    refuse_null,
)

TaskType = Literal[
    "non_parallel", "parallel", "compound", "converter_non_parallel", "converter_compound"
]
PARALLEL_TYPES = frozenset({"parallel", "compound", "converter_compound"})
NON_PARALLEL_TYPES = frozenset(
    {"non_parallel", "compound", "converter_non_parallel", "converter_compound"}
)


def has_parallel_part(task_type: str) -> bool:
    return task_type in PARALLEL_TYPES


def has_non_parallel_part(task_type: str) -> bool:
    return task_type in NON_PARALLEL_TYPES


def _check_command(command: str) -> str:
    split_command(command)
    return command


def _check_http_url(link: str) -> str:
    if not link.startswith(("http://", "https://")) or len(link) < 11:
        raise ValueError("must be an http:// or https:// URL")
    return link


def _check_args_schema(schema: dict[str, Any]) -> dict[str, Any]:
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    check_dict_keys(schema)
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as error:
        raise ValueError(f"not a valid JSON Schema: {error.message}") from None
    return schema


Command = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=10 * MAX_NAME_CHARS),
    AfterValidator(_check_command),
]
MetaDict = Annotated[JsonObject, AfterValidator(check_dict_keys)]
ArgsSchema = Annotated[JsonObject, AfterValidator(_check_args_schema)]
HttpUrlText = Annotated[str, AfterValidator(_check_http_url)]


def task_type_from_commands(
    command_non_parallel: str | None, command_parallel: str | None
) -> TaskType:
    if command_non_parallel is None:
        return "parallel"
    if command_parallel is None:
        return "non_parallel"
    return "compound"


class CatalogueFields(BaseModel):
    """Task fields newer than fractal-server 2.6.4 (which drops them); manifests carry them
    today and the task catalogue is searched by them."""

    type: TaskType | None = None
    category: NonEmptyStr | None = None
    modality: NonEmptyStr | None = None
    tags: list[NonEmptyStr] = Field(default_factory=list)
    authors: NonEmptyStr | None = None


class TaskCreate(RequestModel, CatalogueFields):
    name: NonEmptyStr
    # fractal-server 2.7+ takes no `source`: one is made of `name` and `version`
    # (`services/task_package.generated_source`).
    source: NonEmptyStr | None = None
    command_non_parallel: Command | None = None
    command_parallel: Command | None = None
    meta_non_parallel: MetaDict | None = None
    meta_parallel: MetaDict | None = None
    version: NonEmptyStr | None = None
    args_schema_non_parallel: ArgsSchema | None = None
    args_schema_parallel: ArgsSchema | None = None
    args_schema_version: NonEmptyStr | None = None
    docs_info: str | None = None
    docs_link: HttpUrlText | None = None
    input_types: TypeDict = Field(default_factory=dict)
    output_types: TypeDict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_commands_and_type(self) -> TaskCreate:
        if self.source is None and self.version is None:
            raise ValueError("A task without `source` needs a `version`")
        if self.command_parallel is None and self.command_non_parallel is None:
            raise ValueError(
                "Task must have at least one valid command (parallel and/or non_parallel)"
            )
        inferred = task_type_from_commands(self.command_non_parallel, self.command_parallel)
        if self.type is not None and self.type.removeprefix("converter_") != inferred:
            raise ValueError(
                f"type '{self.type}' does not fit the commands given (they make a "
                f"'{inferred}' task)"
            )
        return self

    @property
    def task_type(self) -> TaskType:
        return self.type or task_type_from_commands(
            self.command_non_parallel, self.command_parallel
        )


class TaskUpdate(LenientRequestModel):
    name: NonEmptyStr | None = None
    version: NonEmptyStr | None = None
    command_parallel: Command | None = None
    command_non_parallel: Command | None = None
    input_types: TypeDict | None = None
    output_types: TypeDict | None = None
    category: NonEmptyStr | None = None
    modality: NonEmptyStr | None = None
    tags: list[NonEmptyStr] | None = None
    authors: NonEmptyStr | None = None

    # `version`, `category`, `modality` and `authors` may be unset with null (2.6.4: version).
    _not_null = field_validator(
        "name",
        "command_parallel",
        "command_non_parallel",
        "input_types",
        "output_types",
        "tags",
        mode="before",
    )(refuse_null)


class TaskRead(ResponseModel):
    id: int
    name: str
    type: str
    source: str
    owner: str | None
    version: str | None
    is_core: bool = False  # fractal-server 2.26 (additive)
    command_non_parallel: str | None
    command_parallel: str | None
    meta_parallel: dict[str, Any]
    meta_non_parallel: dict[str, Any]
    args_schema_non_parallel: dict[str, Any] | None
    args_schema_parallel: dict[str, Any] | None
    args_schema_version: str | None
    docs_info: str | None
    docs_link: str | None
    input_types: dict[str, bool]
    output_types: dict[str, bool]
    category: str | None
    modality: str | None
    tags: list[str]
    authors: str | None
