"""Task arguments checked against the task's JSON Schema (fractal-server 2.6.4 does not).

While a workflow is edited, missing required arguments are fine (they may come later); at job
submission they are problems too. The arguments the runner supplies itself (`zarr_url`, ...)
are never required from the user.
"""

from __future__ import annotations

from typing import Any

from jsonschema.validators import validator_for

from ..schemas.workflow import RESERVED_ARGUMENTS


def argument_problems(
    schema: dict[str, Any] | None,
    args: dict[str, Any] | None,
    *,
    location: list[str | int],
    require_all: bool,
) -> list[dict[str, Any]]:
    """Every way `args` breaks `schema`, as FastAPI-shaped error items under `location`."""
    if schema is None:
        return []
    instance = args or {}
    validator = validator_for(schema)(schema)
    problems: list[dict[str, Any]] = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        path = [*location, *error.absolute_path]
        if error.validator == "required":
            if not require_all:
                continue
            at_top = not error.absolute_path
            required: list[str] = list(error.validator_value)  # type: ignore[arg-type]
            missing = [
                name
                for name in required
                if isinstance(error.instance, dict)
                and name not in error.instance
                and not (at_top and name in RESERVED_ARGUMENTS)
            ]
            # jsonschema reports a missing property once per missing property, each time
            # with the whole `required` list: report each name once.
            problems.extend(
                {"loc": [*path, name], "msg": "Field required", "type": "missing"}
                for name in missing
                if [*path, name] not in [problem["loc"] for problem in problems]
            )
            continue
        problems.append(
            {"loc": path, "msg": error.message, "type": f"args_schema.{error.validator}"}
        )
    return problems
