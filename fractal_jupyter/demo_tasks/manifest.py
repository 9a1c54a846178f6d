"""The demo tasks as `POST api/v2/task/` bodies (what a manifest would say)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _command(module: str, python: str) -> str:
    return f"{python} {HERE / module}.py"


def demo_task_bodies(python: str = sys.executable) -> list[dict[str, Any]]:
    return [
        {
            "name": "Create demo plate",
            "source": "demo:create_plate",
            "type": "converter_non_parallel",
            "command_non_parallel": _command("create_plate", python),
            "args_schema_non_parallel": {
                "type": "object",
                "properties": {
                    "zarr_dir": {"type": "string"},
                    "plate_name": {"type": "string", "default": "demo_plate.zarr"},
                    "rows": {"type": "string", "default": "ABCD"},
                    "columns": {"type": "integer", "minimum": 1, "default": 6},
                    "fields": {"type": "integer", "minimum": 1, "default": 2},
                    "seed": {"type": "integer", "default": 0},
                    "pixels": {
                        "type": "boolean",
                        "default": False,
                        "title": "Pixels",
                        "description": "write OME-Zarr images of nuclei with labels, "
                        "not only their metadata",
                    },
                },
                "required": ["zarr_dir"],
                "additionalProperties": False,
            },
            "category": "Conversion",
            "tags": ["demo"],
        },
        {
            "name": "Measure intensity",
            "source": "demo:measure_intensity",
            "command_parallel": _command("measure_intensity", python),
            "args_schema_parallel": {
                "type": "object",
                "properties": {
                    "zarr_url": {"type": "string"},
                    "threshold": {"type": "number", "default": 150.0},
                },
                "required": ["zarr_url"],
                "additionalProperties": False,
            },
            "category": "Measurement",
            "tags": ["demo"],
        },
        {
            "name": "Project image",
            "source": "demo:projection",
            "command_non_parallel": _command("init_projection", python),
            "command_parallel": _command("compute_projection", python),
            "input_types": {"is_3D": True},
            "output_types": {"is_3D": False},
            "args_schema_non_parallel": {
                "type": "object",
                "properties": {
                    "zarr_urls": {"type": "array", "items": {"type": "string"}},
                    "zarr_dir": {"type": "string"},
                    "suffix": {"type": "string", "default": "_mip"},
                },
                "required": ["zarr_urls", "zarr_dir"],
                "additionalProperties": False,
            },
            "args_schema_parallel": {
                "type": "object",
                "properties": {"zarr_url": {"type": "string"}, "init_args": {"type": "object"}},
                "required": ["zarr_url", "init_args"],
                "additionalProperties": False,
            },
            "category": "Image Processing",
            "tags": ["demo", "3D"],
        },
    ]
