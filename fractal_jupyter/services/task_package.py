"""Which package (and which version of it) a task belongs to: the one place that says so.

A task's package identity is what travels between servers (the portable workflow export,
`{pkg_name, version, name}`) and what relates the versions of a task to each other (the
version-update candidates of a workflow). It is derived from the task's own fields, which
every task has whether or not it is in a task group (migration 0007 gave the groups the same
package names):

- a pip-collected task (`source` = `pip_remote|pip_local:<name>:<version>:<extras>:py<X.Y>:
  <slug>`): the package name of its source, normalised, and the version of its source;
- any other task (created by hand, or by a custom collection, whose `source` is
  `<owner>:<label>[:<version>][:<slug of the task name>]`, see `generated_source`): the
  label, normalised, with the task's `version`; without a version there is no identity
  (nothing to compare or export).

Every use goes through `package_identity`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from ..db.models import Task
from ..tasks.package import normalize_package_name, slugify_task_name

_PIP_KINDS = ("pip_remote", "pip_local")


@dataclass(frozen=True)
class PackageIdentity:
    pkg_name: str
    version: str


def package_identity(task: Task) -> PackageIdentity | None:
    """The package (normalised name) and version of `task`, or None when it has no version."""
    parts = task.source.split(":")
    if parts[0] in _PIP_KINDS and len(parts) >= 3 and parts[1] and parts[2]:
        return PackageIdentity(normalize_package_name(parts[1]), parts[2])
    if not task.version:
        return None
    label = task.source
    if task.owner is not None and label.startswith(f"{task.owner}:"):
        label = label[len(task.owner) + 1 :]
    for suffix in (":" + slugify_task_name(task.name), ":" + task.version):
        if label.endswith(suffix) and len(label) > len(suffix):
            label = label[: -len(suffix)]
    return PackageIdentity(normalize_package_name(label), task.version)


def generated_source(name: str, version: str) -> str:
    """The source of a task created without one (fractal-server 2.7+ has no `source`): its
    package is its name, as for a task created by hand there, and `package_identity` reads
    `(name, version)` back from it."""
    return f"{slugify_task_name(name)}:{version}"


def version_key(version: str) -> tuple[int, Version | str]:
    """Sorts versions as PEP 440 says; versions it cannot read come first, as text."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def newest(tasks: Iterable[tuple[Task, PackageIdentity]]) -> tuple[Task, PackageIdentity] | None:
    """The entry of the highest version (the highest id among equal versions)."""
    return max(
        tasks,
        key=lambda entry: (version_key(entry[1].version), entry[0].id),
        default=None,
    )
