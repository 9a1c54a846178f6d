"""The OpenAPI 3.1 document, generated from the route table and the pydantic models."""

from __future__ import annotations

import functools
import re
from typing import Any

from pydantic import BaseModel, TypeAdapter

from .._version import __version__
from .base import Operation, operations_of
from .routes import PREFIX, ROUTES

REF_TEMPLATE = "#/components/schemas/{model}"


class _SchemaCollector:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def schema_of(self, annotation: Any) -> dict[str, Any]:
        schema = TypeAdapter(annotation).json_schema(ref_template=REF_TEMPLATE)
        self.components.update(schema.pop("$defs", {}))
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            self.components[annotation.__name__] = schema
            return {"$ref": REF_TEMPLATE.format(model=annotation.__name__)}
        return schema


def _operation_document(
    spec: Operation, path_ids: list[str], tag: str, collector: _SchemaCollector
) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}
        for name in path_ids
    ]
    if spec.query is not None:
        for name, field in spec.query.model_fields.items():
            parameters.append(
                {
                    "name": name,
                    "in": "query",
                    "required": field.is_required(),
                    "schema": TypeAdapter(field.annotation or Any).json_schema(),
                }
            )
    document: dict[str, Any] = {"summary": spec.summary, "tags": [tag]}
    if parameters:
        document["parameters"] = parameters
    if spec.body is not None:
        body_schema = collector.schema_of(spec.body)
        if spec.list_body is not None:
            items = collector.schema_of(spec.list_body)
            body_schema = {"anyOf": [body_schema, {"type": "array", "items": items}]}
        document["requestBody"] = {
            "required": spec.body_required,
            "content": {"application/json": {"schema": body_schema}},
        }
    if spec.form is not None:
        form_type = "application/x-www-form-urlencoded"
        document["requestBody"] = {
            "required": True,
            "content": {form_type: {"schema": collector.schema_of(spec.form)}},
        }
    responses: dict[str, Any] = {str(spec.status): _answer_document(spec, collector)}
    alternative = spec.form_alternative
    if alternative is not None and alternative.form is not None:
        form_schema = collector.schema_of(alternative.form)
        document["requestBody"]["content"]["multipart/form-data"] = {"schema": form_schema}
        responses[str(alternative.status)] = _answer_document(alternative, collector)
    if not spec.public:
        responses["401"] = {"description": "No valid credentials"}
        responses["422"] = {"description": "Invalid request; `detail` says what is wrong"}
    document["responses"] = responses
    if not spec.public:
        document["security"] = [{"jupyterToken": []}]
    return document


def _answer_document(spec: Operation, collector: _SchemaCollector) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": "Success"}
    if spec.response is not None:
        answer["content"] = {"application/json": {"schema": collector.schema_of(spec.response)}}
    return answer


@functools.cache
def openapi_document() -> dict[str, Any]:
    collector = _SchemaCollector()
    paths: dict[str, Any] = {}
    for route in ROUTES:
        path_ids = re.findall(r"\{(\w+)\}", route.path)
        paths[PREFIX + route.path] = {
            method: _operation_document(spec, path_ids, route.tag, collector)
            for method, spec in operations_of(route.handler).items()
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fractal-jupyter",
            "version": __version__,
            "description": (
                "fractal-server 2.6.4's API served by a Jupyter server extension. Paths are "
                "relative to the Jupyter server's base URL."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": collector.components,
            "securitySchemes": {
                "jupyterToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`token <Jupyter token>` or `Bearer <token>`",
                }
            },
        },
    }
