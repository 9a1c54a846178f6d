"""fractal-tasks-core's real manifest, read from its wheel (downloaded once, without deps)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
WHEEL_CACHE = REPO / ".tmp" / "wheels"


def tasks_core_manifest(version: str = "2.1.0") -> dict[str, Any]:
    pattern = f"fractal_tasks_core-{version}-*.whl"
    wheels = sorted(WHEEL_CACHE.glob(pattern))
    if not wheels:
        WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                f"fractal-tasks-core=={version}",
                "-d",
                str(WHEEL_CACHE),
            ],
            check=True,
        )
        wheels = sorted(WHEEL_CACHE.glob(pattern))
    with zipfile.ZipFile(wheels[-1]) as wheel:
        manifest: dict[str, Any] = json.loads(
            wheel.read("fractal_tasks_core/__FRACTAL_MANIFEST__.json")
        )
    return manifest


def task_create_bodies(manifest: dict[str, Any], root: str = "/opt/ftc") -> list[dict[str, Any]]:
    """`POST api/v2/task/` bodies for every task of a manifest (commands are placeholders)."""
    bodies = []
    for entry in manifest["task_list"]:
        body: dict[str, Any] = {
            "name": entry["name"],
            "source": "fractal-tasks-core:" + entry["name"].lower().replace(" ", "_"),
            "args_schema_version": manifest["args_schema_version"],
            "type": entry["type"],
        }
        for part in ("non_parallel", "parallel"):
            if f"executable_{part}" in entry:
                body[f"command_{part}"] = f"python {root}/{entry[f'executable_{part}']}"
                body[f"meta_{part}"] = entry.get(f"meta_{part}") or {}
                body[f"args_schema_{part}"] = entry[f"args_schema_{part}"]
        for key in (
            "input_types",
            "output_types",
            "category",
            "modality",
            "tags",
            "docs_info",
            "docs_link",
        ):
            if key in entry:
                body[key] = entry[key]
        bodies.append(body)
    return bodies
