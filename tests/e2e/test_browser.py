"""The quickstart notebook in JupyterLab, in Debian's Chromium driven by Playwright.

Runs every cell of examples/quickstart.ipynb in the browser, then checks in the page that the
workflow builder, the job monitor and the image browser render (ipywidgets, no custom JS) and
react to a click. Screenshots go to .tmp/artifacts/browser/. Chromium comes from apt
(`apt-get install chromium` when root and missing); Playwright's own browser downloads are
never used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import ServerProcess

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "examples" / "quickstart.ipynb"
ARTIFACTS = REPO / ".tmp" / "artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
# The lock that scripts/*.sh take too: `make test` runs test groups that install side by side.
APT_GET = ["flock", "/tmp/fractal-jupyter-apt.lock", "apt-get", "-o", "DPkg::Lock::Timeout=600"]
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"},
}  # every cell stays in the page (no windowing), no news toast


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


def use_lab_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """JupyterLab user settings (`SETTINGS`) in `tmp_path`, for the servers this test starts."""
    settings = tmp_path / "lab-settings"
    for name, values in SETTINGS.items():
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
    shutil.copy(NOTEBOOK, root / "examples" / NOTEBOOK.name)
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
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
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

            # The builder: the three saved tasks are listed; a click adds a fourth.
            builder.scroll_into_view_if_needed()
            steps = builder.locator(".fractal-steps select")
            expect(steps.locator("option")).to_have_count(3)
            page.screenshot(path=str(ARTIFACTS / "1-builder.png"))
            builder.locator("button", has_text="Add to workflow").click()
            expect(steps.locator("option")).to_have_count(4, timeout=30_000)
            expect(builder).to_contain_text("not saved yet")
            builder.screenshot(path=str(ARTIFACTS / "2-builder-after-add.png"))

            # The monitor: bars per task, the log, "Refresh" answers.
            monitor.scroll_into_view_if_needed()
            expect(monitor.locator(".widget-hprogress")).to_have_count(3)
            monitor.locator("button", has_text="Refresh").click()
            expect(monitor).to_contain_text("refreshed: done", timeout=30_000)
            # Each task's images by status, from the run history.
            expect(monitor).to_contain_text("0 failed, 0 running")
            monitor.screenshot(path=str(ARTIFACTS / "3-monitor.png"))

            # The image browser: picking an image shows its thumbnail (or why there is none).
            images.scroll_into_view_if_needed()
            picker = images.locator(".fractal-image-picker select")
            first = picker.locator("option").first.get_attribute("value")
            assert first is not None
            picker.select_option(first)
            expect(images.locator("table.fractal-table tr[style*='e3f2fd']")).to_have_count(
                1, timeout=30_000
            )
            expect(images.locator(".widget-image, :text('no thumbnail')").first).to_be_visible()
            images.screenshot(path=str(ARTIFACTS / "4-images.png"))
            page.screenshot(path=str(ARTIFACTS / "5-page.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
            errors = page.locator("[data-mime-type*='stderr'], [data-mime-type*='error']")
            print("notebook errors:", errors.all_inner_texts())
            raise
        finally:
            browser.close()
    errors = [text for text in console if "Error" in text and "widget" in text.lower()]
    assert not errors, errors
