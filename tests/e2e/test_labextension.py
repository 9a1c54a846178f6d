"""The Fractal labextension in JupyterLab, in Debian's Chromium driven by Playwright.

The demo data (`fractal_jupyter.demo.run_demo`: the demo project, a dataset of 96 images, a
workflow, a finished job) is made through the API; then, in the page: the sidebar shows the
demo project; the dataset view pages and filters; a finished job's view shows its log; a job
that is still running (a task that sleeps) is opened from the sidebar and seen to end, with the
notification; "Open in a notebook" on the dataset creates a notebook whose cells run and show
the ImageBrowser. Screenshots go to .tmp/artifacts/labextension/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.demo import run_demo
from tests.e2e.test_browser import ensure_chromium, launch_chromium, use_lab_settings
from tests.support.jobs import MISBEHAVE
from tests.support.server import ServerProcess

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / ".tmp" / "artifacts" / "labextension"
# A non-parallel task that sleeps: a job that is still running when the browser opens it.
SLEEP_TASK = {
    "name": "Sleep",
    "source": "test:sleep",
    "command_non_parallel": f"{sys.executable} {MISBEHAVE}",
}
SLEEP_SECONDS = 12


def test_labextension_is_installed_enabled_and_ok():
    """The install (wheel or editable) put the built labextension where JupyterLab finds it."""
    listed = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", listed.stdout + listed.stderr)
    line = next((x for x in text.splitlines() if "fractal-jupyter-labextension" in x), "")
    assert "enabled" in line and "OK" in line, text
    installed = Path(sys.prefix, "share/jupyter/labextensions/fractal-jupyter-labextension")
    if (
        not installed.is_symlink()
    ):  # a developer's `jupyter-builder develop` link has no install.json
        assert "(python, fractal-jupyter)" in line, text


@pytest.fixture
def server(tmp_path, monkeypatch, isolated_runtime):
    use_lab_settings(tmp_path, monkeypatch, toasts=True)
    root = tmp_path / "root"
    root.mkdir()
    running = ServerProcess(root)
    running.start()
    yield running
    running.stop()


def submit_sleeping_job(server: ServerProcess, demo: dict[str, Any]) -> dict[str, Any]:
    api = server.api
    project_path = f"api/v2/project/{demo['project']['id']}/"
    task = api.call("POST", "api/v2/task/", SLEEP_TASK)
    workflow = api.call("POST", project_path + "workflow/", {"name": "sleepy workflow"})
    api.call(
        "POST",
        f"{project_path}workflow/{workflow['id']}/wftask/?task_id={task['id']}",
        {"args_non_parallel": {"mode": "sleep", "seconds": SLEEP_SECONDS}},
    )
    job = api.call(
        "POST",
        f"{project_path}job/submit/?workflow_id={workflow['id']}"
        f"&dataset_id={demo['dataset']['id']}",
        {},
    )
    assert job["status"] == "submitted", job
    return dict(job)


def test_labextension_in_jupyterlab(server):
    chromium = ensure_chromium()
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    demo = run_demo(server.api, server.data_dir / "zarr")
    assert demo["job"]["status"] == "done", demo["job"]
    finished_job = demo["job"]["id"]
    url = f"http://127.0.0.1:{server.port}/lab?token={server.token}&reset"
    console: list[str] = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, chromium)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda message: console.append(message.text))
            page.goto(url)

            # The launcher's card; the sidebar, from its own icon in the left area: the demo
            # project, opened.
            expect(page.locator(".jp-LauncherCard", has_text="Fractal")).to_be_visible(
                timeout=60_000
            )
            page.locator(".jp-SideBar li[data-id='fractal-sidebar']").click(timeout=60_000)
            sidebar = page.locator("#fractal-sidebar")
            project = sidebar.locator(".fractal-project[data-project='demo']")
            expect(project).to_be_visible(timeout=30_000)
            expect(project.locator(".fractal-dataset")).to_contain_text("demo plate 1")
            expect(project.locator(".fractal-workflow")).to_contain_text("demo workflow")
            finished = project.locator(f".fractal-job[data-job='{finished_job}']")
            expect(finished.locator(".fractal-badge")).to_have_text("done", timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "0-sidebar.png"))

            # The dataset view: 96 images, 50 a page; paging, then filters from the summaries.
            project.locator(".fractal-dataset .fractal-item-name").click()
            dataset = page.locator(".fractal-dataset-view")
            info = dataset.locator(".fractal-page-info")
            expect(info).to_have_text("page 1 of 2, 96 image(s)", timeout=30_000)
            expect(dataset.locator(".fractal-images tbody tr")).to_have_count(50)
            dataset.locator("button.fractal-next").click()
            expect(info).to_have_text("page 2 of 2, 96 image(s)")
            expect(dataset.locator(".fractal-images tbody tr")).to_have_count(46)
            dataset.locator("select[data-attribute='level']").select_option(label="bright")
            expect(info).to_have_text("page 1 of 2, 56 image(s)")
            dataset.locator("select[data-attribute='well']").select_option(label="C05")
            expect(info).to_contain_text(" image(s)")
            rows = dataset.locator(".fractal-images tbody tr")
            expect(rows.first).to_contain_text("C05")
            for text in rows.all_inner_texts():
                assert "C05" in text and "bright" in text, text
            page.screenshot(path=str(ARTIFACTS / "1-dataset-filtered.png"))
            dataset.locator("select[data-attribute='well']").select_option(label="any")
            dataset.locator("select[data-attribute='level']").select_option(label="any")
            expect(info).to_have_text("page 1 of 2, 96 image(s)")

            # A finished job's view: every task done, its log.
            finished.locator(".fractal-item-name").click()
            job_view = page.locator(f"#fractal-job-{demo['project']['id']}-{finished_job}")
            expect(job_view.locator("h2 .fractal-badge")).to_have_text("done", timeout=30_000)
            expect(job_view.locator(".fractal-progress .fractal-badge")).to_have_text(
                ["done", "done", "done"]
            )
            expect(job_view.locator(".fractal-log")).to_contain_text(
                f"End of job {finished_job}: done"
            )
            page.screenshot(path=str(ARTIFACTS / "2-finished-job.png"))

            # A running job: seen running in the sidebar and in its view, then seen to end,
            # with the notification and its button to the view.
            running_job = submit_sleeping_job(server, demo)["id"]
            sidebar.locator("button.fractal-refresh").click()
            running = project.locator(f".fractal-job[data-job='{running_job}']")
            expect(running.locator(".fractal-badge")).to_have_text("running", timeout=10_000)
            running.locator(".fractal-item-name").click()
            running_view = page.locator(f"#fractal-job-{demo['project']['id']}-{running_job}")
            expect(running_view.locator("h2 .fractal-badge")).to_have_text("running")
            expect(running_view.locator("button.fractal-stop")).to_be_enabled()
            expect(running_view.locator(".fractal-log")).to_contain_text("Step 1: task")
            page.screenshot(path=str(ARTIFACTS / "3-running-job.png"))
            expect(running_view.locator("h2 .fractal-badge")).to_have_text(
                "done", timeout=SLEEP_SECONDS * 1000 + 60_000
            )
            expect(running_view.locator("button.fractal-stop")).to_be_disabled()
            toast = page.locator(".Toastify__toast", has_text=f"Fractal job {running_job} is done")
            expect(toast).to_be_visible(timeout=15_000)
            expect(running.locator(".fractal-badge")).to_have_text("done")
            page.screenshot(path=str(ARTIFACTS / "4-job-ended.png"))
            toast.locator("button", has_text="Open job").click()
            expect(running_view).to_be_visible()

            # "Open in a notebook" on the dataset: a notebook with the client and the
            # ImageBrowser, whose cells run.
            project.locator(".fractal-dataset .fractal-item-name").click()
            dataset.locator("button.fractal-open-notebook").click()
            notebook = page.locator(".jp-NotebookPanel", has_text="ImageBrowser(client")
            expect(notebook).to_be_visible(timeout=30_000)
            page.wait_for_selector(
                ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000
            )
            assert (server.data_dir / f"fractal-dataset-{demo['dataset']['id']}.ipynb").exists()
            # Both code cells ran (a click before the kernel is connected may be lost).
            ran = notebook.locator(".jp-InputPrompt", has_text=re.compile(r"\[\d+\]"))
            for _attempt in range(3):
                page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
                try:
                    expect(ran).to_have_count(2, timeout=30_000)
                    break
                except AssertionError:
                    continue
            browser_widget = notebook.locator(".fractal-image-browser")
            expect(browser_widget).to_be_visible(timeout=120_000)
            expect(browser_widget).to_contain_text("image(s)", timeout=60_000)
            expect(notebook.locator("[data-mime-type*='error']")).to_have_count(0)
            page.screenshot(path=str(ARTIFACTS / "5-notebook.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    errors = [text for text in console if "fractal" in text.lower() and "error" in text.lower()]
    assert not errors, errors
