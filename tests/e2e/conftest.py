"""End-to-end fixtures: the real SLURM cluster (started once per session, see tests/support),
and a Jupyter runtime folder of the test's own for servers and kernels started by a test."""

import os
from pathlib import Path

import pytest

from tests.support.cluster import slurm_cluster

__all__ = ["slurm_cluster"]


@pytest.fixture
def isolated_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh JUPYTER_RUNTIME_DIR, and no JupyterHub variables: a kernel then finds only the
    server the test starts."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    for name in list(os.environ):
        if name.startswith("JUPYTERHUB_") or name == "JPY_API_TOKEN":
            monkeypatch.delenv(name)
    return runtime
