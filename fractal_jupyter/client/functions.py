"""Notebook functions as Fractal tasks.

    def threshold(zarr_url: str, level: float = 0.5) -> dict | None: ...
    task = client.register_function(threshold, type="parallel")

The function is pickled with cloudpickle (by value when it lives in the notebook or in a local
module next to it) into a function file under `functions_dir`, named by its content so that a
file is never replaced; the task's command is `<python> -m fractal_jupyter.runner.function
<file>`, where `<python>` is the kernel's interpreter unless another is named. Its argument
schema comes from the signature and type hints (pydantic), without the arguments the runner
supplies (`zarr_url`, `zarr_urls`, `zarr_dir`, `init_args`). Registering a name again with other
code or settings makes the next version (`source` `function:<name>:v<N>`); old jobs keep the
file they ran. Registering the same thing again returns the task registered already.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import shlex
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any, Literal, TypeVar

import cloudpickle  # type: ignore[import-untyped]
from pydantic import ConfigDict, PydanticUserError, create_model

from ..commands import split_command
from ..runner.function import RUNNER_MODULE, python_version, write_function_file
from ..schemas.task import TaskRead
from ..schemas.workflow import RESERVED_ARGUMENTS
from .data import DataMixin
from .workflows import WorkflowsMixin

F = TypeVar("F", bound=Callable[..., Any])
FunctionTaskType = Literal["parallel", "non_parallel", "compound"]

ARGS_SCHEMA_VERSION = "pydantic_v2"
# The task fields that make a registration the same as an earlier one.
_COMPARED_FIELDS = (
    "command_non_parallel",
    "command_parallel",
    "args_schema_non_parallel",
    "args_schema_parallel",
    "meta_non_parallel",
    "meta_parallel",
    "input_types",
    "output_types",
    "docs_info",
)
# Which runner arguments each part of a task receives, and which the function must take.
_PART_ARGUMENTS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "parallel": (frozenset({"zarr_url"}), frozenset({"zarr_url"})),
    "non_parallel": (frozenset({"zarr_urls", "zarr_dir"}), frozenset({"zarr_urls"})),
    "init": (frozenset({"zarr_urls", "zarr_dir"}), frozenset({"zarr_urls"})),
    "compute": (frozenset({"zarr_url", "init_args"}), frozenset({"zarr_url", "init_args"})),
}


class FunctionNotRegistrable(TypeError):
    """The function cannot become a task (checked before anything is sent or written)."""


def default_functions_dir() -> Path:
    """`$FRACTAL_FUNCTIONS_DIR`, else `fractal/functions` in the user's Jupyter data folder
    (in the home folder, which the nodes of a cluster usually share)."""
    configured = os.environ.get("FRACTAL_FUNCTIONS_DIR")
    if configured:
        return Path(configured)
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "fractal" / "functions"


def _describe(function: Callable[..., Any]) -> str:
    return getattr(function, "__qualname__", None) or repr(function)


def _check_is_plain_function(function: Callable[..., Any]) -> None:
    if not isinstance(function, types.FunctionType):
        raise FunctionNotRegistrable(
            f"{function!r} is not a plain Python function (def ...): only those can be tasks"
        )
    if function.__name__ == "<lambda>":
        raise FunctionNotRegistrable(
            "a lambda cannot be registered as a task: define it with `def name(...)` so that "
            "the task, its form and its log have a name"
        )


def _hints(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception as error:
        raise FunctionNotRegistrable(
            f"the type hints of {_describe(function)} cannot be resolved: {error}"
        ) from None


def arguments_schema(function: Callable[..., Any], part: str) -> tuple[dict[str, Any], list[str]]:
    """The JSON Schema of the arguments a user gives `function` as part `part` of a task,
    and the runner arguments of that part that the function does not take.

    Every problem (a missing runner argument, `*args`, a type pydantic cannot describe in
    JSON) is named in one FunctionNotRegistrable.
    """
    given, required = _PART_ARGUMENTS[part]
    signature = inspect.signature(function)
    parameters = signature.parameters
    takes_any_keyword = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    hints = _hints(function)
    problems: list[str] = []
    missing = sorted(name for name in required if name not in parameters)
    if missing:
        problems.append(
            f"a {part} part is called with {', '.join(sorted(given))}: add the parameter(s) "
            f"{', '.join(missing)}"
        )
    fields: dict[str, Any] = {}
    for parameter in parameters.values():
        if parameter.kind is parameter.VAR_KEYWORD or parameter.name in RESERVED_ARGUMENTS:
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.POSITIONAL_ONLY):
            problems.append(
                f"{parameter}: tasks are called with keyword arguments only "
                "(no *args, no positional-only parameters)"
            )
            continue
        annotation = hints.get(parameter.name, Any)
        default = ... if parameter.default is parameter.empty else parameter.default
        try:
            field: dict[str, Any] = {parameter.name: (annotation, default)}
            create_model("field", **field).model_json_schema()
        except (PydanticUserError, TypeError, ValueError) as error:
            kind = getattr(error, "code", None) or type(error).__name__
            shown = getattr(annotation, "__name__", None) or str(annotation)
            with_default = "" if default is ... else f" with default {parameter.default!r}"
            problems.append(
                f"{parameter.name}: {shown}{with_default} cannot be given as JSON ({kind}); "
                "use str, int, float, bool, Literal, list, dict, a pydantic model or a TypedDict"
            )
            continue
        fields[parameter.name] = (annotation, default)
    if problems:
        raise FunctionNotRegistrable(
            f"{_describe(function)} cannot be a task: " + "; ".join(problems)
        )
    model = create_model(function.__name__, __config__=ConfigDict(extra="forbid"), **fields)
    schema: dict[str, Any] = model.model_json_schema()
    if function.__doc__:
        schema.setdefault("description", inspect.cleandoc(function.__doc__))
    dropped = [] if takes_any_keyword else sorted(given - set(parameters))
    return schema, dropped


def _is_local_module(module: types.ModuleType) -> bool:
    """A module of the user's own (next to the notebook), not installed nor standard."""
    top = module.__name__.partition(".")[0]
    if top == "__main__" or top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return False
    if getattr(module, "__file__", None) is None:
        return False
    return top not in packages_distributions()


def _local_modules(function: types.FunctionType) -> list[types.ModuleType]:
    """The user's own modules the function comes from or refers to (pickled by value)."""
    found: dict[str, types.ModuleType] = {}
    candidates: list[Any] = [sys.modules.get(function.__module__)]
    candidates += [function.__globals__.get(name) for name in function.__code__.co_names]
    for value in candidates:
        module = value if isinstance(value, types.ModuleType) else None
        if module is None and value is not None:
            module = sys.modules.get(getattr(value, "__module__", None) or "")
        if module is not None and _is_local_module(module):
            found[module.__name__] = module
    return list(found.values())


def _unpicklable_parts(function: types.FunctionType) -> list[str]:
    """The captured variables and globals of `function` that cloudpickle cannot pickle."""
    captured: dict[str, Any] = {}
    for name, cell in zip(function.__code__.co_freevars, function.__closure__ or (), strict=False):
        try:
            captured[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    for name in function.__code__.co_names:
        if name in function.__globals__:
            captured.setdefault(name, function.__globals__[name])
    bad = []
    for name, value in captured.items():
        try:
            cloudpickle.dumps(value)
        except Exception as error:
            bad.append(f"{name} ({type(value).__name__}: {error})")
    return bad


def pickle_function(function: types.FunctionType) -> bytes:
    """The function pickled with cloudpickle, the user's own modules by value."""
    registered = []
    for module in _local_modules(function):
        try:
            cloudpickle.register_pickle_by_value(module)
            registered.append(module)
        except ValueError:  # registered already
            continue
    try:
        return bytes(cloudpickle.dumps(function))
    except Exception as error:
        bad = _unpicklable_parts(function)
        culprits = f": {'; '.join(bad)}" if bad else ""
        raise FunctionNotRegistrable(
            f"{_describe(function)} cannot be pickled ({error}). What it uses from outside "
            f"cannot be sent to the task{culprits}. Create such objects inside the function."
        ) from None
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "function"


def _command(python: str, function_file: Path) -> str:
    command = f"{shlex.quote(python)} -m {RUNNER_MODULE} {shlex.quote(str(function_file))}"
    try:
        split_command(command)
    except ValueError as error:
        raise FunctionNotRegistrable(
            f"the task command {command!r} would be refused ({error}): choose a functions_dir "
            "and an interpreter path without such characters"
        ) from None
    return command


@dataclass(frozen=True)
class FunctionFile:
    """One part of a task, ready to be written: its file, header, pickle and schema."""

    path: Path
    header: dict[str, Any]
    payload: bytes
    schema: dict[str, Any]


def prepare_function(
    function: types.FunctionType, *, name: str, part: str, functions_dir: Path
) -> FunctionFile:
    """Check and pickle one part of a task (nothing is written yet)."""
    schema, dropped = arguments_schema(function, part)
    payload = pickle_function(function)
    header = {
        "name": _describe(function),
        "part": part,
        "python": python_version(),
        "python_executable": sys.executable,
        "cloudpickle": cloudpickle.__version__,
        "dropped_arguments": dropped,
    }
    digest = hashlib.sha256(payload + repr(sorted(header.items())).encode()).hexdigest()[:20]
    path = functions_dir.expanduser().absolute() / _safe_name(name) / f"{part}-{digest}.pkl"
    return FunctionFile(path, header, payload, schema)


class FunctionsMixin(DataMixin, WorkflowsMixin):
    def register_function(
        self,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        type: FunctionTaskType = "parallel",
        init: Callable[..., Any] | None = None,
        input_types: Mapping[str, bool] | None = None,
        output_types: Mapping[str, bool] | None = None,
        meta: Mapping[str, Any] | None = None,
        python: str | None = None,
        functions_dir: str | os.PathLike[str] | None = None,
    ) -> TaskRead:
        """Register `function` as a task of the caller's (a new version if `name` exists).

        - `type="parallel"`: called once per image with `zarr_url` and its arguments.
        - `type="non_parallel"`: called once with `zarr_urls` (and `zarr_dir` if it takes it).
        - `type="compound"`: `init(zarr_urls, zarr_dir?, ...)` returns a
          `parallelization_list`, then `function(zarr_url, init_args, ...)` runs per item.

        A function returns None or a task output dict (`image_list_updates`,
        `image_list_removals`, `filters`). `meta` goes to the part(s) that run (e.g.
        `{"cpus_per_task": 2}`); `python` is the interpreter that runs it (default: this
        kernel's, which must be reachable by the machines that run the task, like
        `functions_dir`, default `default_functions_dir()`).
        """
        _check_is_plain_function(function)
        if (type == "compound") != (init is not None):
            raise FunctionNotRegistrable(
                "a compound task needs init=<the function that makes the parallelization list>"
                if type == "compound"
                else f"init= is for compound tasks, not {type} ones"
            )
        if init is not None:
            _check_is_plain_function(init)
        assert isinstance(function, types.FunctionType)
        task_name = name or function.__name__
        interpreter = python or sys.executable
        folder = Path(functions_dir) if functions_dir is not None else default_functions_dir()
        body: dict[str, Any] = {
            "name": task_name,
            "type": type,
            "input_types": dict(input_types or {}),
            "output_types": dict(output_types or {}),
            "args_schema_version": ARGS_SCHEMA_VERSION,
            "docs_info": inspect.getdoc(function),
            "tags": ["function"],
        }
        parts: list[tuple[str, types.FunctionType, str]] = []
        if type == "parallel":
            parts.append(("parallel", function, "parallel"))
        elif type == "non_parallel":
            parts.append(("non_parallel", function, "non_parallel"))
        else:
            assert isinstance(init, types.FunctionType)
            parts += [("init", init, "non_parallel"), ("compute", function, "parallel")]
        prepared = [
            (field, prepare_function(f, name=task_name, part=part, functions_dir=folder))
            for part, f, field in parts
        ]
        for field, function_file in prepared:
            body[f"command_{field}"] = _command(interpreter, function_file.path)
            body[f"args_schema_{field}"] = function_file.schema
            if meta:
                body[f"meta_{field}"] = dict(meta)
        # Written only once every check passed; a file that exists is left as it is.
        for _, function_file in prepared:
            write_function_file(function_file.path, function_file.header, function_file.payload)
        return self._register_version(task_name, body)

    def function_task(
        self,
        *,
        name: str | None = None,
        type: FunctionTaskType = "parallel",
        init: Callable[..., Any] | None = None,
        input_types: Mapping[str, bool] | None = None,
        output_types: Mapping[str, bool] | None = None,
        meta: Mapping[str, Any] | None = None,
        python: str | None = None,
        functions_dir: str | os.PathLike[str] | None = None,
    ) -> Callable[[F], F]:
        """The decorator form of `register_function`: `@client.function_task(type=...)`
        registers the function and leaves it as it is, with the task as `.fractal_task`."""

        def register(function: F) -> F:
            task = self.register_function(
                function,
                name=name,
                type=type,
                init=init,
                input_types=input_types,
                output_types=output_types,
                meta=meta,
                python=python,
                functions_dir=functions_dir,
            )
            function.fractal_task = task  # type: ignore[attr-defined]
            return function

        return register

    def _register_version(self, name: str, body: dict[str, Any]) -> TaskRead:
        owner = self.get_current_user().username
        pattern = re.compile(rf"{re.escape(owner)}:function:{re.escape(name)}:v(\d+)")
        versions: dict[int, TaskRead] = {}
        for task in self.list_tasks():
            found = pattern.fullmatch(task.source)
            if found and task.owner == owner:
                versions[int(found.group(1))] = task
        if versions:
            latest = versions[max(versions)]
            wanted = {key: body.get(key) for key in _COMPARED_FIELDS}
            wanted["meta_non_parallel"] = wanted["meta_non_parallel"] or {}
            wanted["meta_parallel"] = wanted["meta_parallel"] or {}
            if all(getattr(latest, key) == value for key, value in wanted.items()):
                return latest
        version = max(versions, default=0) + 1
        return self.create_task(
            {**body, "source": f"function:{name}:v{version}", "version": str(version)}
        )
