"""How many CPUs this process may use: the default of the local backend's concurrency.

A server inside a SLURM allocation (batchspawner) or a container sees every CPU of the node in
`os.cpu_count()`, but may run on a few: SLURM binds it to the allocation's CPUs (its affinity)
and a cgroup v2 `cpu.max` quota may cap it further.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

PROC_SELF_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _affinity() -> set[int]:
    return os.sched_getaffinity(0)


def usable_cpus(
    affinity: Callable[[], set[int]] = _affinity,
    proc_cgroup: Path | None = None,
    cgroup_root: Path | None = None,
) -> int:
    """The CPUs this process may run on, capped by the cgroup v2 CPU quota; at least 1."""
    try:
        cpus = len(affinity())
    except (AttributeError, OSError):  # no sched_getaffinity on this platform
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(proc_cgroup or PROC_SELF_CGROUP, cgroup_root or CGROUP_ROOT)
    if quota is not None:
        cpus = min(cpus, quota)
    return max(cpus, 1)


def cgroup_cpu_quota(proc_cgroup: Path, cgroup_root: Path) -> int | None:
    """CPUs allowed by the smallest `cpu.max` quota of this process's cgroup v2 and its
    ancestors, rounded up; None without a quota (or without cgroup v2)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    own = next((line[3:] for line in lines if line.startswith("0::")), None)
    if own is None:
        return None
    folder = cgroup_root / own.strip().lstrip("/")
    quotas = []
    while True:
        quota = _cpu_max(folder / "cpu.max")
        if quota is not None:
            quotas.append(quota)
        if folder == cgroup_root or cgroup_root not in folder.parents:
            break
        folder = folder.parent
    return min(quotas) if quotas else None


def _cpu_max(path: Path) -> int | None:
    """`cpu.max` holds "<quota> <period>" in microseconds, or "max <period>" (no quota)."""
    try:
        quota, period = path.read_text().split()[:2]
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):  # missing, "max", or unreadable
        return None
