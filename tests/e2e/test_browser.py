"""The quickstart notebook in JupyterLab, in Debian's Chromium driven by Playwright.

Runs every cell of examples/quickstart.ipynb in the browser (1,280 x 800 pixels), then checks
in the page that the workflow builder, the job monitor and the image browser render
(ipywidgets, no custom JS) and react to a click. In the builder a catalogue task goes in
before step 3, step 2's memory is edited and saved, and the run panel runs steps 2 to 3 on
one well's images (the server says which steps and images the job covered). Then the kernel
restarts and two cells the test adds to its copy of the notebook show the job list and an
image browser: a job submitted before the restart opens with its whole log, an image row is
selected, 500 images go on a page. Screenshots go to .tmp/artifacts/browser/. Chromium
comes from apt (`apt-get install chromium` when root and missing); Playwright's own browser
downloads are never used.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from fractal_jupyter.widgets.catalogue import GROUP_MARK
from tests.support.server import ServerProcess

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "examples" / "quickstart.ipynb"
ARTIFACTS = REPO / ".tmp" / "artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
# The lock that scripts/*.sh take too: `make test` runs test groups that install side by side.
APT_GET = ["flock", "/tmp/fractal-jupyter-apt.lock", "apt-get", "-o", "DPkg::Lock::Timeout=600"]
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "doNotDisturbMode": True},
}  # every cell stays in the page (no windowing), no toasts over the screenshots
VIEWPORT = {"width": 1280, "height": 800}
# Cells the test adds at the end of its copy of the notebook; they run again after the kernel
# restarted, with nothing of the quickstart's variables left.
JOB_LIST_CELL = """from fractal_jupyter.client import FractalClient
from fractal_jupyter.widgets import ImageBrowser, JobList

client = FractalClient()
jobs = JobList(client)
jobs"""
IMAGES_CELL = """ran = [j for j in jobs.jobs if j.workflow_dump["name"] == "quickstart workflow"]
ImageBrowser(client, ran[0].project_id, ran[0].dataset_id)"""
WIDGETS = ".fractal-job-list, .fractal-job-monitor, .fractal-image-browser"
MEASURE = "Measure intensity"  # a demo task that needs no argument to be set
WELL = "A01"  # the well the run from step 2 to 3 is filtered on
MEMORY_MB = 2000


def ensure_chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0:
        pytest.skip(
            "SKIPPED LOUDLY: the browser test needs Debian's Chromium at /usr/bin/chromium and "
            "installing it needs root (`apt-get install chromium`)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*APT_GET, "update", "-qq"], check=True, env=env)
    subprocess.run([*APT_GET, "install", "-y", "-qq", "chromium"], check=True, env=env)
    assert CHROMIUM.exists(), "apt-get installed chromium but /usr/bin/chromium is missing"
    return CHROMIUM


def use_lab_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, toasts: bool = False
) -> None:
    """JupyterLab user settings (`SETTINGS`) in `tmp_path`, for the servers this test starts;
    `toasts=True` keeps notifications on (the labextension's test looks at them)."""
    settings = tmp_path / "lab-settings"
    for name, values in SETTINGS.items():
        if toasts and name.endswith("/notification"):
            values = {**values, "doNotDisturbMode": False}
        path = settings / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    monkeypatch.setenv("JUPYTERLAB_SETTINGS_DIR", str(settings))


def launch_chromium(playwright: Any, chromium: Path) -> Any:
    """Debian's Chromium, headless, as Playwright's browser (no sandbox: tests may run as root)."""
    return playwright.chromium.launch(
        executable_path=str(chromium), args=["--no-sandbox", "--disable-dev-shm-usage"]
    )


@pytest.fixture
def server(tmp_path, monkeypatch, isolated_runtime):
    use_lab_settings(tmp_path, monkeypatch)
    root = tmp_path / "root"
    (root / "examples").mkdir(parents=True)
    notebook = json.loads(NOTEBOOK.read_text())
    notebook["cells"] += [
        {
            "cell_type": "code",
            "metadata": {},
            "source": source,
            "outputs": [],
            "execution_count": None,
        }
        for source in (JOB_LIST_CELL, IMAGES_CELL)
    ]
    (root / "examples" / NOTEBOOK.name).write_text(json.dumps(notebook))
    running = ServerProcess(root)
    running.start()
    yield running
    running.stop()


def test_quickstart_in_jupyterlab(server):
    chromium = ensure_chromium()
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = (
        f"http://127.0.0.1:{server.port}/lab/tree/examples/{NOTEBOOK.name}"
        f"?token={server.token}&reset"
    )
    console: list[str] = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, chromium)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("console", lambda message: console.append(message.text))
            page.goto(url)
            page.wait_for_selector(".jp-Notebook", timeout=60_000)
            # A notebook without a kernel of its own asks which kernel: take Python 3.
            select_kernel = page.locator(".jp-Dialog button", has_text="Select")
            try:
                select_kernel.wait_for(timeout=10_000)
                select_kernel.click()
            except PlaywrightTimeout:
                pass
            page.wait_for_selector(
                ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000
            )
            page.screenshot(path=str(ARTIFACTS / "0-opened.png"))

            started = page.locator(".jp-InputPrompt", has_text="[1]")
            for _attempt in range(3):  # a click before the kernel is connected may be lost
                page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
                try:
                    expect(started).to_have_count(1, timeout=20_000)
                    break
                except AssertionError:
                    continue

            builder = page.locator(".fractal-workflow-builder").first
            monitor = page.locator(".fractal-job-monitor").first
            images = page.locator(".fractal-image-browser").first
            expect(builder).to_be_visible(timeout=120_000)
            expect(monitor).to_be_visible(timeout=120_000)
            expect(images).to_be_visible(timeout=300_000)
            # Every cell ran: the kernel is idle again and the last cells printed.
            page.wait_for_selector(
                ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=300_000
            )
            expect(page.locator(".jp-OutputArea-output", has_text="bright images:")).to_have_count(
                1, timeout=60_000
            )
            expect(monitor).to_contain_text("done", timeout=60_000)
            expect(images).to_contain_text("image(s)")
            # Section 7: the notebook's own function, registered, run from a builder on the
            # projections (the cell asserts the job is done), its attribute in the images,
            # and a thumbnail of an output image as a picture.
            counted = page.locator(".jp-OutputArea-output", has_text="nuclei per image:")
            expect(counted).to_have_count(1)
            expect(counted).to_contain_text("_mip")
            expect(
                page.locator(".jp-OutputArea-output", has_text="attributes now:")
            ).to_contain_text("'nuclei'")
            picture = page.locator(".jp-RenderedImage img").last
            picture.scroll_into_view_if_needed()
            expect(picture).to_be_visible()
            assert picture.evaluate("image => image.naturalWidth") > 0
            page.screenshot(path=str(ARTIFACTS / "0a-function-thumbnail.png"))

            # The builder: the three saved tasks are listed; a task chosen in the catalogue
            # goes in before the third (nothing is chosen before: the button is disabled).
            builder.scroll_into_view_if_needed()
            steps = builder.locator(".fractal-steps select")
            expect(steps.locator("option")).to_have_count(3)
            page.screenshot(path=str(ARTIFACTS / "1-builder.png"))
            add = builder.locator("button", has_text="Add to workflow")
            expect(add).to_be_disabled()
            choose(builder.locator(".fractal-catalogue select"), MEASURE)
            choose(builder.locator("select:has(option:text-is('the end'))"), "before step 3")
            add.click()
            expect(steps.locator("option")).to_have_count(4, timeout=30_000)
            # (a Select shows spaces as no-break spaces: \s matches both)
            new_step = re.compile(r"^3\.\s+Measure\s+intensity\s+\(new\)")
            expect(steps.locator("option").nth(2)).to_have_text(new_step)
            expect(builder).to_contain_text("not saved yet")
            screenshot(page, builder, "2-builder-after-add.png")

            # The monitor: bars per task, the log, "Refresh" answers.
            monitor.scroll_into_view_if_needed()
            expect(monitor.locator(".widget-hprogress")).to_have_count(3)
            monitor.locator("button", has_text="Refresh").click()
            expect(monitor).to_contain_text("refreshed: done", timeout=30_000)
            # Each task's images in the job by status, from the run history.
            expect(monitor).to_contain_text(re.compile(r"\d+ images: \d+ done"))
            expect(monitor).not_to_contain_text("calls")
            screenshot(page, monitor, "3-monitor.png")

            # The image browser: a click on a row shows its thumbnail (or why there is none).
            images.scroll_into_view_if_needed()
            select_first_row(images)
            screenshot(page, images, "4-images.png")
            page.screenshot(path=str(ARTIFACTS / "5-page.png"), full_page=True)

            # The builder's step settings and run panel: step 2's memory edited and saved,
            # then a run of steps 2 to 3 on the images of one well; the job list below shows
            # that job too.
            edit_memory_of_step_2(page, builder, server)
            run_steps_2_to_3_of_one_well(page, builder, server)

            restart_kernel_and_run_added_cells(page)
            check_past_job_and_images(page, server)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
            errors = page.locator("[data-mime-type*='stderr'], [data-mime-type*='error']")
            print("notebook errors:", errors.all_inner_texts())
            raise
        finally:
            browser.close()
    errors = [text for text in console if "Error" in text and "widget" in text.lower()]
    assert not errors, errors


def screenshot(page: Any, widget: Any, name: str) -> None:
    """The page (1,280 x 800) with `widget`'s top at the top of the notebook's view."""
    widget.evaluate("element => element.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(ARTIFACTS / name))


def select_first_row(images: Any) -> None:
    """Click the first row of an image browser's table: that image is selected."""
    from playwright.sync_api import expect

    rows = images.locator(".fractal-rows select")
    rows.select_option(index=0)
    expect(rows.locator("option").first).to_have_js_property("selected", True)
    preview = images.locator(".widget-image:visible, :text('No preview')").first
    expect(preview).to_be_visible(timeout=30_000)


def choose(select: Any, text: str) -> None:
    """Select the first option of `select` whose text has `text` (labels may say more), not a
    catalogue's group header (a hand-made task is a package of its own name)."""
    option = select.locator("option", has_text=text).filter(has_not_text=GROUP_MARK).first
    select.select_option(option.get_attribute("value"))


def quickstart_workflow(server: ServerProcess) -> tuple[int, dict[str, Any]]:
    """The quickstart project's id and its workflow, as the server has them."""
    project = next(
        p for p in server.api.call("GET", "api/v2/project/") if p["name"] == "quickstart"
    )
    base = f"api/v2/project/{project['id']}/workflow/"
    listed = next(w for w in server.api.call("GET", base) if w["name"] == "quickstart workflow")
    return project["id"], server.api.call("GET", f"{base}{listed['id']}/")


def edit_memory_of_step_2(page: Any, builder: Any, server: ServerProcess) -> None:
    """Step 2's settings: its memory set, the step marked edited, saved on the server."""
    from playwright.sync_api import expect

    steps = builder.locator(".fractal-steps select")
    choose(steps, f"2. {MEASURE}")
    expect(builder).to_contain_text(f"Step 2: {MEASURE}", timeout=30_000)
    memory = builder.locator(".widget-hbox", has_text="Memory per run (MB)").last.locator("input")
    memory.fill(str(MEMORY_MB))
    memory.press("Enter")
    expect(steps.locator("option").nth(1)).to_contain_text("(edited)", timeout=30_000)
    screenshot(
        page, builder.locator(".widget-html", has_text=f"Step 2: {MEASURE}"), "5a-step-settings.png"
    )
    builder.locator("button", has_text="Save this step").click()
    expect(builder).to_contain_text("saved step 2", timeout=30_000)
    expect(steps.locator("option").nth(1)).not_to_contain_text("(edited)")
    _project_id, workflow = quickstart_workflow(server)
    saved = workflow["task_list"][1]
    assert saved["task"]["name"] == MEASURE
    assert saved["meta_parallel"]["mem"] == MEMORY_MB, saved["meta_parallel"]


def run_steps_2_to_3_of_one_well(page: Any, builder: Any, server: ServerProcess) -> None:
    """ "Run from here" on step 2, to step 3, a job filter on one well: the panel counts the
    well's images; the job ran steps 2 and 3 only, each on those images only."""
    from playwright.sync_api import expect

    builder.locator("button", has_text="Run from here").click()
    expect(builder).to_contain_text("the run starts at step 2", timeout=30_000)
    panel = builder.locator(".fractal-run-panel")
    choose(panel.locator(".widget-dropdown", has_text="to step").locator("select"), f"3. {MEASURE}")
    add = re.compile(r"^\s*add\s*$")
    panel.locator("button", has_text=add).first.click()  # an attribute...
    key = panel.locator("input[placeholder='key']")
    key.fill("well")
    key.press("Enter")
    panel.locator("button", has_text=add).first.click()  # ...its first value (the row's "add")
    value = panel.locator("[placeholder^='text, or a JSON value']")
    value.fill(WELL)
    value.blur()  # a text area: sent when it loses the focus (Enter is a new line)

    project_id, workflow = quickstart_workflow(server)
    project_path = f"api/v2/project/{project_id}/"
    (dataset,) = server.api.call("GET", f"{project_path}dataset/")
    dataset_path = f"{project_path}dataset/{dataset['id']}/"
    filters = dataset["filters"]
    query = {"attributes": {**filters["attributes"], "well": WELL}, "types": filters["types"]}
    well_images = {i["zarr_url"] for i in call_pages(server, f"{dataset_path}images/query/", query)}
    every_image = server.api.call("POST", f"{dataset_path}images/query/", {})["total_count"]
    assert 0 < len(well_images) < every_image
    expect(panel).to_contain_text(
        re.compile(rf"(^|\D){len(well_images)} image(\(s\)|s) will be processed"), timeout=30_000
    )
    screenshot(page, panel, "5b-run-panel.png")

    builder.locator("button", has_text=re.compile(r"^\s*Run\s*$")).click()
    submitted = re.compile(r"job (\d+) submitted")
    expect(builder).to_contain_text(submitted, timeout=60_000)
    job_id = int(submitted.findall(builder.inner_text())[0])
    job = wait_for_job(server, project_id, job_id)
    assert job["status"] == "done", job["log"]
    assert (job["first_task_index"], job["last_task_index"]) == (1, 2)
    monitor = builder.locator(".fractal-job-monitor")
    expect(monitor.locator(".widget-hprogress")).to_have_count(2, timeout=30_000)
    expect(monitor).to_contain_text(f"{len(well_images)} images: {len(well_images)} done")
    screenshot(page, monitor, "5c-run-steps-2-to-3.png")

    latest = server.api.call(
        "GET", f"{project_path}latest-job/?workflow_id={workflow['id']}&dataset_id={dataset['id']}"
    )
    assert latest["id"] == job_id and latest["attribute_filters"] == {"well": [WELL]}, latest
    progress = server.api.call("GET", f"{project_path}job/{job_id}/progress/")
    ran = [(task["order"], task["task_name"]) for task in progress["tasks"]]
    assert ran == [(1, MEASURE), (2, MEASURE)], ran
    for task in progress["tasks"]:  # each step's calls: one per image of the well
        runs = server.api.call(
            "GET",
            f"{project_path}status/run/?dataset_id={dataset['id']}"
            f"&workflowtask_id={task['workflow_task_id']}",
        )
        latest_run = max(run["id"] for run in runs)
        units = server.api.call(
            "GET",
            f"{project_path}status/run/{latest_run}/units/?dataset_id={dataset['id']}"
            f"&workflowtask_id={task['workflow_task_id']}&page_size=1000",
        )
        processed = {url for unit in units["items"] for url in unit["zarr_urls"]}
        assert processed == well_images, (task, processed)
        assert {unit["status"] for unit in units["items"]} == {"done"}, units


def call_pages(server: ServerProcess, path: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
    """Every image that matches `filters` (the query answers one page at a time)."""
    images: list[dict[str, Any]] = []
    page = 1
    while True:
        answer = server.api.call("POST", f"{path}?page={page}&page_size=100", {"filters": filters})
        images += answer["images"]
        if len(images) >= answer["total_count"] or not answer["images"]:
            return images
        page += 1


def wait_for_job(server: ServerProcess, project_id: int, job_id: int) -> dict[str, Any]:
    """The job once it has ended (three minutes at most)."""
    deadline = time.monotonic() + 180
    while True:
        job: dict[str, Any] = server.api.call("GET", f"api/v2/project/{project_id}/job/{job_id}/")
        if job["status"] != "submitted" or time.monotonic() > deadline:
            return job
        time.sleep(1)


def restart_kernel_and_run_added_cells(page: Any) -> None:
    """Restart the kernel, clearing every output, then run the test's two cells in it."""
    from playwright.sync_api import expect

    page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Restart Kernel and Clear Outputs").first.click()
    page.locator(".jp-Dialog button", has_text="Restart").click()
    expect(page.locator(".fractal-job-list")).to_have_count(0, timeout=30_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    cells = page.locator(".jp-Notebook .jp-Cell")
    cells.nth(cells.count() - 2).locator(".jp-InputArea-editor").click()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run Selected Cell and All Below").first.click()


def check_past_job_and_images(page: Any, server: ServerProcess) -> None:
    """In the fresh kernel: the job list shows the quickstart's job (submitted by the kernel
    before the restart); its monitor has the whole log; 500 images go on a page."""
    from playwright.sync_api import expect

    job_list = page.locator(".fractal-job-list").first
    expect(job_list).to_be_visible(timeout=120_000)
    rows = job_list.locator(".fractal-rows select").first
    row = rows.locator("option", has_text="quickstart workflow").first
    expect(row).to_be_attached(timeout=30_000)
    job_id = int(row.inner_text().split()[0])
    job = next(j for j in server.api.call("GET", "api/v2/job/") if j["id"] == job_id)
    assert job["status"] == "done" and job["log"]
    rows.select_option(row.get_attribute("value"))
    monitor = job_list.locator(".fractal-job-monitor")
    expect(monitor).to_be_visible(timeout=30_000)
    expect(monitor).to_contain_text("done", timeout=30_000)
    expect(monitor).to_contain_text("took")
    # The whole log: its first and its last line are there, the box scrolls.
    lines = [line for line in job["log"].splitlines() if line.strip()]
    log = monitor.locator(".fractal-log")
    expect(log).to_contain_text(lines[0].split(" - ")[-1], timeout=30_000)
    expect(log).to_contain_text(lines[-1].split(" - ")[-1])
    log.evaluate("box => { box.scrollTop = box.scrollHeight }")
    search = monitor.locator("input[placeholder='search the log']")
    search.fill("Measure intensity")
    search.press("Enter")
    expect(log.locator("mark").first).to_be_visible(timeout=30_000)
    screenshot(page, job_list, "6-job-list.png")
    screenshot(page, monitor, "7-past-job-monitor.png")

    # The image browser of the fresh kernel: 500 images a page, then a row selected.
    images = page.locator(".fractal-image-browser").first
    expect(images).to_contain_text("image(s)", timeout=120_000)
    images.scroll_into_view_if_needed()
    total = int(images.locator("b", has_text=re.compile(r"^\d+$")).first.inner_text())
    images.locator(".widget-dropdown", has_text="per page").locator("select").select_option("500")
    expect(images.locator(".fractal-rows select option")).to_have_count(
        min(total, 500), timeout=30_000
    )
    expect(images).to_contain_text("of 1")
    select_first_row(images)
    screenshot(page, images, "8-images-500-per-page.png")

    # Nothing wider than the page at 1,280 pixels.
    wide = page.evaluate(
        f"""() => [...document.querySelectorAll({WIDGETS!r})]
            .filter(e => e.scrollWidth > e.clientWidth + 2)
            .map(e => e.className + ': ' + e.scrollWidth + ' > ' + e.clientWidth)"""
    )
    assert not wide, wide
