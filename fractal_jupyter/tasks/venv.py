"""The folder of one collected package version and the venv in it: build, freeze, remove,
rebuild from a freeze.

    <name><version>/        venv/, collection.log, collection_freeze.txt, and
                            collection.json (written last: the folder is complete)

A deactivated package keeps its folder without `venv/`, its `collection.json` renamed (no
later collection takes the folder for complete); its freeze stays, and reactivation installs
exactly it into a new venv and puts the mark back.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

from .log import CollectionError, CollectionLog, subprocess_environment
from .package import PipPackage

COLLECTION_FILE = "collection.json"
# The completeness mark of a deactivated folder, put back when it is reactivated.
INACTIVE_COLLECTION_FILE = "collection.inactive.json"
LOG_FILE = "collection.log"
FREEZE_FILE = "collection_freeze.txt"
VENV_SUBDIR = "venv"
FIND_PACKAGE_TIMEOUT_SECONDS = 60.0


def venv_python(folder: Path) -> Path:
    return folder / VENV_SUBDIR / "bin" / "python"


def _pip(folder: Path) -> list[str]:
    return [str(venv_python(folder)), "-m", "pip"]


def _show_field(output: str, name: str) -> str:
    for line in output.splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise CollectionError(f"`pip show` printed no {name}")


async def download(package: PipPackage, staging: Path, log: CollectionLog) -> Path:
    """The wheel of a PyPI package (its version, or the newest), into `staging/download/`."""
    download_dir = staging / "download"
    spec = package.name if package.version is None else f"{package.name}=={package.version}"
    await log.run(
        [package.interpreter, "-m", "pip", "download", "--no-deps", spec, "-d", str(download_dir)],
        cwd=staging,
    )
    files = sorted(download_dir.iterdir())
    if len(files) != 1:
        raise CollectionError(f"pip download of {spec} gave {len(files)} files, not one")
    return files[0]


async def package_root(folder: Path, package_name: str, log: CollectionLog) -> Path:
    """Where the package's modules are installed in the venv of `folder`."""
    location = _show_field(
        await log.run([*_pip(folder), "show", package_name], cwd=folder), "Location"
    )
    return Path(location) / package_name.replace("-", "_")


async def install(package: PipPackage, folder: Path, log: CollectionLog) -> tuple[Path, Path]:
    """A new venv in `folder` with the package, its extras and pins; its freeze written.

    The `pins_pre` are installed first, in one pip call (the package's requirements then
    keep them when they allow them); the `pins` (2.6.4's) are checked after the package
    and installed where pip chose another version. Returns the venv's python and the
    package root."""
    await log.run([package.interpreter, "-m", "venv", VENV_SUBDIR], cwd=folder)
    pip = _pip(folder)
    if package.pins_pre:
        pinned = [f"{name}=={version}" for name, version in package.pins_pre.items()]
        log.write(f"installing the pinned versions before the package: {' '.join(pinned)}")
        await log.run([*pip, "install", *pinned], cwd=folder)
    await log.run([*pip, "install", package.requirement()], cwd=folder)
    for name, version in package.pins.items():
        installed = _show_field(await log.run([*pip, "show", name], cwd=folder), "Version")
        if installed != version:
            log.write(f"{name} {installed} is installed; the pinned version is {version}")
            await log.run([*pip, "install", f"{name}=={version}"], cwd=folder)
        else:
            log.write(f"{name} {installed} is installed, as pinned")
    root = await package_root(folder, package.name, log)
    log.write(f"package root: {root}")
    await freeze(folder, log)
    return venv_python(folder), root


async def freeze(folder: Path, log: CollectionLog) -> str:
    """`pip freeze --all` of the venv of `folder`, also written to its freeze file."""
    text = await log.run([*_pip(folder), "freeze", "--all"], cwd=folder, quiet=True)
    (folder / FREEZE_FILE).write_text(text)
    return text


async def reinstall(interpreter: str, folder: Path, frozen: str, log: CollectionLog) -> None:
    """A new venv in `folder` (which must have none) with exactly the packages of `frozen`."""
    if (folder / VENV_SUBDIR).exists():
        raise CollectionError(f"{folder / VENV_SUBDIR} exists already")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FREEZE_FILE).write_text(frozen)
    await log.run([interpreter, "-m", "venv", VENV_SUBDIR], cwd=folder)
    # --no-deps: the freeze lists every package already, each at its version.
    await log.run(
        [*_pip(folder), "install", "--no-deps", "-r", str(folder / FREEZE_FILE)], cwd=folder
    )


async def remove_venv(folder: Path, log: CollectionLog) -> int:
    """Remove the venv of `folder` (its completeness mark put aside first); the bytes freed."""
    if (folder / COLLECTION_FILE).exists():
        (folder / COLLECTION_FILE).replace(folder / INACTIVE_COLLECTION_FILE)
    venv = folder / VENV_SUBDIR
    freed = await asyncio.to_thread(disk_usage, venv)
    log.write(f"removing {venv} ({freed / 1e6:.1f} MB)")
    await asyncio.to_thread(shutil.rmtree, venv, True)
    if venv.exists():
        raise CollectionError(f"{venv} could not be removed completely")
    return freed


def restore_collection_file(folder: Path) -> None:
    """After a reactivation: the folder is complete again."""
    if (folder / INACTIVE_COLLECTION_FILE).exists():
        (folder / INACTIVE_COLLECTION_FILE).replace(folder / COLLECTION_FILE)


async def remove_folder(folder: Path, log: CollectionLog) -> None:
    log.write(f"removing {folder}")
    await asyncio.to_thread(shutil.rmtree, folder, True)
    if folder.exists():
        raise CollectionError(f"{folder} could not be removed completely")


def disk_usage(path: Path) -> int:
    """Bytes of the regular files under `path` (symbolic links not followed)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                status = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(root, name)):
                total += status.st_blocks * 512
    return total


def write_collection_file(folder: Path, data: dict[str, Any]) -> None:
    """Mark `folder` complete: a later collection of the same request may reuse it."""
    (folder / COLLECTION_FILE).write_text(json.dumps(data, indent=2))


def read_collection_file(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / COLLECTION_FILE).read_text())
    except (OSError, ValueError) as error:
        raise CollectionError(f"{folder / COLLECTION_FILE} is unreadable: {error}") from None
    if not isinstance(data, dict):
        raise CollectionError(f"{folder / COLLECTION_FILE} is not a JSON object")
    return data


async def find_package_root(python: str, package_name: str) -> Path:
    """Where `python` imports `package_name` from (a package installed by other means)."""
    name = package_name.replace("-", "_")
    code = (
        "import importlib.util, pathlib; "
        f"print(pathlib.Path(importlib.util.find_spec({name!r}).origin).parent.as_posix())"
    )
    process = await asyncio.create_subprocess_exec(
        python,
        "-c",
        code,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=subprocess_environment(),
    )
    try:
        async with asyncio.timeout(FIND_PACKAGE_TIMEOUT_SECONDS):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise CollectionError(
            f"Cannot determine 'package_root': {python} did not answer within "
            f"{FIND_PACKAGE_TIMEOUT_SECONDS:.0f} s."
        ) from None
    output = stdout.decode(errors="replace").strip("\n")
    if process.returncode != 0 or not output or "\n" in output:
        raise CollectionError(
            "Cannot determine 'package_root'.\n"
            f"Original output: {output}\n"
            f"Original error: {stderr.decode(errors='replace')}"
        )
    return Path(output)
