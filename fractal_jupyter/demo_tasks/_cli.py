"""The command-line contract of a Fractal task: `--args-json A --out-json B`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_task(function: Callable[..., Any]) -> None:
    parser = argparse.ArgumentParser(description=function.__doc__)
    parser.add_argument("--args-json", required=True, type=Path)
    parser.add_argument("--out-json", required=True, type=Path)
    options = parser.parse_args()
    arguments = json.loads(options.args_json.read_text())
    result = function(**arguments)
    if result is not None:
        options.out_json.write_text(json.dumps(result))


def read_meta(zarr_url: str) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((Path(zarr_url) / "meta.json").read_text())
    return meta


def write_meta(zarr_url: str, meta: dict[str, Any]) -> None:
    folder = Path(zarr_url)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").write_text(json.dumps(meta))
