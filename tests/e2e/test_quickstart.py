"""examples/quickstart.ipynb runs top to bottom (nbclient) against a real `jupyter fractal`.

The kernel finds the server by itself, as in a user's notebook: the server's runtime file is
in an isolated runtime directory, and the notebook lies below the server's root.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.support.server import ServerProcess

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "quickstart.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def server(tmp_path, isolated_runtime):
    root = tmp_path / "root"
    root.mkdir()
    running = ServerProcess(root)
    running.start()
    yield running
    running.stop()


def outputs_of(cell: dict) -> str:
    texts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            texts.append(output["text"])
        elif "data" in output:
            texts.append(output["data"].get("text/plain", ""))
    return "".join(texts)


def test_quickstart_runs_top_to_bottom(server):
    folder = server.data_dir / "examples"
    folder.mkdir()
    notebook_path = folder / NOTEBOOK.name
    shutil.copy(NOTEBOOK, notebook_path)
    notebook = nbformat.read(notebook_path, as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
    ).execute()
    nbformat.write(notebook, notebook_path)  # kept with the test's files, outputs included

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    text = "\n".join(outputs_of(cell) for cell in code)
    assert "from runtime file)" in text
    assert "422 Value error" in text and "not an absolute path" in text
    assert "-> Measure intensity -> " in text
    assert "Measure intensity    done     12 images: 12 done" in text
    # The three widgets were displayed as widget views.
    views = [
        cell
        for cell in code
        if any(WIDGET_VIEW in output.get("data", {}) for output in cell.get("outputs", []))
    ]
    assert [c.source.splitlines()[-1] for c in views] == ["builder", "monitor", "browser"]

    # What the notebook made, seen through the API.
    api = server.api
    project = next(p for p in api.call("GET", "api/v2/project/") if p["name"] == "quickstart")
    (dataset,) = api.call("GET", f"api/v2/project/{project['id']}/dataset/")
    # The demo workflow's job, then the one of the notebook's own function (section 7).
    job, counted = sorted(
        api.call("GET", f"api/v2/project/{project['id']}/job/"), key=lambda j: j["id"]
    )
    assert job["status"] == "done" and job["dataset_id"] == dataset["id"]
    assert counted["status"] == "done" and counted["dataset_id"] == dataset["id"]
    page = api.call("POST", f"api/v2/project/{project['id']}/dataset/{dataset['id']}/images/query/")
    # 2 rows x 3 columns x 2 fields, each with its projection.
    assert page["total_count"] == 24
    assert f"images: {page['total_count']}" in text
    bright = [image for image in page["images"] if image["attributes"].get("level") == "bright"]
    # Real pixels: a feature table per 3D image, a count per projection, a thumbnail shown.
    assert "nuclei measured in 12 images" in text
    assert sum("nuclei" in image["attributes"] for image in page["images"]) == 12
    assert any("image/png" in output.get("data", {}) for cell in code for output in cell.outputs)
    assert f"bright images: {len(bright)} filters:" in text
    assert Path(dataset["zarr_dir"]).is_relative_to(folder / "quickstart-data")
