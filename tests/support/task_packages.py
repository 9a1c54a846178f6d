"""Tiny task packages for collection tests: a wheel written by hand (no build backend)."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

TASK_SCRIPT = """import argparse, json
parser = argparse.ArgumentParser()
parser.add_argument("--args-json")
parser.add_argument("--out-json")
options = parser.parse_args()
with open(options.out_json, "w") as out:
    json.dump({}, out)
"""


def mock_manifest() -> dict[str, Any]:
    """A version-2 manifest with a converter, a compound and a parallel task."""
    schema = {"type": "object", "properties": {}, "additionalProperties": True}
    return {
        "manifest_version": "2",
        "has_args_schemas": True,
        "args_schema_version": "pydantic_v2",
        "authors": "Test Authors",
        "task_list": [
            {
                "name": "Create Mock Plate",
                "type": "converter_non_parallel",
                "executable_non_parallel": "create.py",
                "meta_non_parallel": {"cpus_per_task": 1},
                "args_schema_non_parallel": schema,
                "category": "Conversion",
                "modality": "HCS",
                "tags": ["mock", "plate"],
                "docs_info": "Makes a plate.",
                "docs_link": "https://example.org/docs",
            },
            {
                "name": "Project Mock",
                "executable_non_parallel": "init_project.py",
                "executable_parallel": "tasks/project.py",
                "args_schema_non_parallel": schema,
                "args_schema_parallel": schema,
                "input_types": {"is_3D": True},
                "output_types": {"is_3D": False},
            },
            {
                "name": "Measure Mock",
                "executable_parallel": "tasks/measure.py",
                "meta_parallel": {"mem": 1000},
                "args_schema_parallel": schema,
                "authors": "Someone Else",
            },
        ],
    }


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_task_wheel(
    folder: Path,
    *,
    name: str = "fractal-tasks-mock",
    version: str = "0.1.0",
    manifest: dict[str, Any] | str | None = None,
    files: tuple[str, ...] = (
        "create.py",
        "init_project.py",
        "tasks/project.py",
        "tasks/measure.py",
    ),
) -> Path:
    """A pure-Python wheel `<name>-<version>-py3-none-any.whl` in `folder`.

    `manifest`: a dict (dumped as JSON), a string (written as is, e.g. broken JSON), or None
    (no manifest in the wheel).
    """
    module = name.replace("-", "_")
    contents: dict[str, bytes] = {f"{module}/__init__.py": b""}
    for relative in files:
        contents[f"{module}/{relative}"] = TASK_SCRIPT.encode()
    if manifest is not None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest, indent=1)
        contents[f"{module}/__FRACTAL_MANIFEST__.json"] = text.encode()
    dist_info = f"{module}-{version}.dist-info"
    contents[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    )
    contents[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: fractal-jupyter-tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    record = [_record_line(path, data) for path, data in contents.items()]
    record.append(f"{dist_info}/RECORD,,")
    contents[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in contents.items():
            archive.writestr(path, data)
    return wheel
