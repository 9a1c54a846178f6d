"""The job list and the job monitor of past jobs, driven from Python against a live server
(see tests/test_widgets.py), and the log helpers they use."""

from __future__ import annotations

import html
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fractal_jupyter.widgets import JobList, JobMonitor
from fractal_jupyter.widgets.rows import duration, failure_summary, render_log
from fractal_jupyter.widgets.wording import plain_log, step_title, task_type_words
from tests.support.jobs import make_workflow, register_tasks

FAILED_LOG = """2026-12-04 10:00:00,001 - INFO - Start of job 3
2026-12-04 10:00:01,002 - INFO - Misbehave: 2 calls
2026-12-04 10:00:02,003 - ERROR - TASK ERROR: Task name: Misbehave, position in Workflow: 0
The call 0_par/0_par_0000001 on image /data/plate.zarr/B01 failed: exit code 3
Its log is 0_par/0_par_0000001.log; it ends with:
misbehaving (exit) on /data/plate.zarr/B01
"""


def test_failure_summary_search_and_duration():
    summary = failure_summary(FAILED_LOG)
    assert summary.startswith("TASK ERROR: Task name: Misbehave")
    assert summary.endswith("misbehaving (exit) on /data/plate.zarr/B01")
    assert failure_summary("2026-12-04 10:00:00,001 - INFO - all fine\n") == ""
    assert failure_summary("no records\nTraceback (most recent call last):\nx") == (
        "Traceback (most recent call last):"
    )

    rendered, matches = render_log(FAILED_LOG, "MISBEHAV")
    assert matches == 3
    assert rendered.count("<mark>") == 3
    # The error record and the lines that continue it are highlighted, the others not.
    assert rendered.count("fractal-log-error") == 4
    assert "Start of job 3\n" in rendered
    only, _ = render_log(FAILED_LOG, "exit code", only_matching=True)
    assert only.count("fractal-log-error") == 1 and "Start of job" not in only
    assert render_log("<b>&</b>", "&")[0] == "&lt;b&gt;<mark>&amp;</mark>&lt;/b&gt;\n"

    start = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    assert duration(start, start + timedelta(seconds=5)) == "5 s"
    assert duration(start, start + timedelta(minutes=3, seconds=7)) == "3 min 07 s"
    assert duration(start, start + timedelta(hours=26, minutes=1)) == "26 h 01 min"
    assert duration(None, None) == ""


def test_plain_words_for_the_runner_terms():
    types = {0: "converter_non_parallel", 1: "compound", 2: "parallel"}
    log = (
        '2026-12-04 10:00:00,001 - INFO - SUBMIT 0-th task (name="Create OME-Zarr")\n'
        '2026-12-04 10:00:01,001 - INFO - END 0-th task (name="Create OME-Zarr")\n'
        '2026-12-04 10:00:01,002 - INFO - SUBMIT 1-th task (name="Project")\n'
        "2026-12-04 10:00:01,003 - INFO - Project: 12 calls in 2 SLURM jobs (6 per job, 3 at "
        "a time)\n"
        "2026-12-04 10:00:01,004 - INFO - Project: warm start, a process forked per call\n"
        "2026-12-04 10:00:02,003 - ERROR - TASK ERROR: Task name: Project, position in "
        "Workflow: 1\n"
        "The call 1_project/1_par_0000003 on image /z/p.zarr/B/03/0 failed: exit code 3\n"
        "2026-12-04 10:00:02,004 - ERROR - Task 'Measure' (position 2) returned an invalid "
        "output\n"
        "The call 0_init/0_non_par failed: exit code 1\n"
    )
    assert plain_log(log, types).splitlines() == [
        "2026-12-04 10:00:00,001 - INFO - Step 1: task 'Create OME-Zarr' (converter) started",
        "2026-12-04 10:00:01,001 - INFO - Step 1: task 'Create OME-Zarr' (converter) ended",
        "2026-12-04 10:00:01,002 - INFO - Step 2: task 'Project' (prepared once, then per "
        "image) started",
        "2026-12-04 10:00:01,003 - INFO - Project: 12 runs in 2 SLURM jobs (6 per job, 3 at "
        "a time)",
        "2026-12-04 10:00:01,004 - INFO - Project: warm start, a process forked per run",
        "2026-12-04 10:00:02,003 - ERROR - TASK ERROR: task 'Project' (prepared once, then per "
        "image) at step 2",
        "The run on image /z/p.zarr/B/03/0 failed: exit code 3",
        "2026-12-04 10:00:02,004 - ERROR - Task 'Measure' (per image) at step 3 returned an "
        "invalid output",
        "The run failed: exit code 1",
    ]
    # Without the types (a deleted workflow task): the name and the step only.
    assert plain_log('SUBMIT 4-th task (name="X")') == "Step 5: task 'X' started"
    assert step_title(0, "Create OME-Zarr", "converter_compound") == (
        "Step 1: task 'Create OME-Zarr' (converter)"
    )
    assert step_title(None, "workflow task 9") == "task 'workflow task 9'"
    assert task_type_words("non_parallel") == "runs once, for all images together"
    assert task_type_words("magic") == "magic"


async def _two_jobs(api: Any, make_client: Any, in_thread: Any, tmp_path: Path) -> Any:
    """Project "p" with a job that failed on one of two images, then a job that was done."""
    _, project = await api("POST", "api/v2/project/", {"name": "p"})
    project_path = f"api/v2/project/{project['id']}/"
    _, dataset = await api(
        "POST", project_path + "dataset/", {"name": "plate", "zarr_dir": str(tmp_path / "zarr")}
    )
    for well in ("A01", "B01"):
        status, answer = await api(
            "POST",
            f"{project_path}dataset/{dataset['id']}/images/",
            {"zarr_url": f"{tmp_path}/zarr/plate.zarr/{well}"},
        )
        assert status == 201, answer
    tasks = await register_tasks(api)
    client = make_client()
    jobs = []
    for name, victims in (("breaks B01", ["/B01"]), ("all well", [])):
        workflow = await make_workflow(
            api,
            project_path,
            name,
            [(tasks["Misbehave"], {"args_parallel": {"mode": "exit", "victims": victims}})],
        )
        job = await in_thread(client.submit_job, project["id"], workflow["id"], dataset["id"])
        jobs.append(
            await in_thread(client.wait_for_job, project["id"], job.id, 60, poll_interval=0.1)
        )
    assert [job.status for job in jobs] == ["failed", "done"]
    return client, project, jobs


async def test_job_list_opens_the_monitor_of_a_past_job(api, make_client, in_thread, tmp_path):
    client, project, (failed, done) = await _two_jobs(api, make_client, in_thread, tmp_path)
    _, other = await api("POST", "api/v2/project/", {"name": "empty"})

    jobs = await in_thread(JobList, client)
    assert [job.id for job in jobs.jobs] == [done.id, failed.id]  # newest first
    assert jobs.rows.header.value.split() == [
        "job",
        "status",
        "workflow",
        "dataset",
        "started",
        "duration",
    ]
    newest = jobs.rows.lines[0].split()
    assert newest[:5] == [str(done.id), "done", "all", "well", "plate"]
    assert jobs.rows.lines[1].split()[:2] == [str(failed.id), "failed"]
    assert jobs.page_count == 1 and jobs.prev_button.disabled and jobs.next_button.disabled
    assert jobs.monitor is None

    # A click on the failed job's row opens its monitor below the list.
    await in_thread(jobs.select, 1)
    monitor = jobs.monitor
    assert isinstance(monitor, JobMonitor) and jobs.monitor_box.children == (monitor,)
    assert monitor.job_id == failed.id and monitor.status == "failed" and not monitor.following
    assert "started " in monitor.times_html.value and "took " in monitor.times_html.value
    assert "failed" in monitor.status_html.value
    # Images, not calls: the task ran on two images, one failed.
    assert monitor.progress is not None
    task = monitor.progress.tasks[0]
    assert (task.images_done, task.images_failed, task.images_submitted) == (1, 1, 0)
    assert "2 images: 1 done, 1 failed" in monitor.tasks_box.children[0].children[2].value
    assert "calls" not in monitor.tasks_box.children[0].children[2].value
    # The whole log, its error highlighted, the failing task's error on top.
    assert monitor.log_text == failed.log
    assert monitor.log_text.count("\n") + 1 > 3 and "Start of job" in monitor.log_html.value
    # In plain words: the step from 1, the task by what it does, runs not calls.
    assert monitor.error_summary.startswith(
        "TASK ERROR: task 'Misbehave' (per image) at step 1\nThe run on image "
    ), monitor.error_summary
    assert "misbehaving (exit)" in monitor.error_summary
    shown = html.unescape(monitor.log_html.value + monitor.error_html.value)
    assert "Step 1: task 'Misbehave' (per image) started" in shown
    for jargon in ("-th task", "position in Workflow", "The call", "per call"):
        assert jargon not in shown, jargon
    assert html.unescape(monitor.tasks_box.children[0].children[0].value) == (
        "Step 1: task 'Misbehave' (per image)"
    )
    assert "position in Workflow: 0" in monitor.log_text  # the server's log keeps its words
    assert "Why it failed" in monitor.error_html.value
    assert "fractal-log-error" in monitor.log_html.value
    assert monitor.stop_button.disabled and not monitor.download_button.disabled
    # Search: matching lines marked and counted; only those lines on request.
    assert monitor.search_log("misbehaving") >= 1
    assert "<mark>misbehaving</mark>" in monitor.log_html.value
    assert "line" in monitor.search_count.value
    await in_thread(monitor.search_log, "misbehaving", True)
    assert "Start of job" not in monitor.log_html.value
    assert monitor.search_log("no such words") == 0
    assert monitor.search_log("") == 0 and monitor.search_count.value == ""

    # The job folder as a zip, next to the notebook (here: tmp_path).
    saved = await in_thread(monitor.download, tmp_path)
    assert saved == tmp_path / f"fractal-job-{failed.id}.zip" and saved.exists()
    with zipfile.ZipFile(saved) as archive:
        assert any(name.endswith(".log") for name in archive.namelist())
    assert f"fractal-job-{failed.id}.zip" in monitor.message.text and not monitor.message.failed

    # The other job, then paging one job per page; a project's list; an unknown job.
    await in_thread(jobs.select, 0)
    assert jobs.monitor is not monitor and jobs.monitor.status == "done"
    assert jobs.monitor.error_summary == "" and jobs.monitor.error_html.value == ""
    paged = await in_thread(JobList, client, page_size=1)
    assert paged.page_count == 2 and [job.id for job in paged.shown] == [done.id]
    await in_thread(paged.next_button.click)
    assert paged.page == 2 and [job.id for job in paged.shown] == [failed.id]
    assert paged.next_button.disabled and not paged.prev_button.disabled
    opened = await in_thread(paged.open_job, failed.id)
    assert opened is not None and paged.rows.selected == 0
    assert await in_thread(paged.open_job, 999_999) is None
    assert paged.message.failed and "999999 is not in this list" in paged.message.text
    empty = await in_thread(JobList, client, other["id"])
    assert empty.jobs == [] and empty.rows.lines == [] and empty.message.text == "no jobs yet"
    mine = await in_thread(JobList, client, project["id"])
    assert [job.id for job in mine.jobs] == [done.id, failed.id]
    refused = await in_thread(JobList, make_client("bob"), project["id"])
    assert refused.jobs == [] and refused.message.failed and "403" in refused.message.text


async def test_job_monitor_from_a_job_id(api, make_client, in_thread, tmp_path):
    client, _project, (failed, _done) = await _two_jobs(api, make_client, in_thread, tmp_path)

    # From the job id alone: the project is looked up.
    monitor = await in_thread(JobMonitor.from_job_id, client, failed.id)
    assert monitor.status == "failed" and monitor.project_id == failed.project_id
    assert monitor.log_text == failed.log and not monitor.message.failed

    # An unknown id, or another user's job: a message, no exception, nothing to click.
    for user, job_id in (("alice", 999_999), ("bob", failed.id)):
        unknown = await in_thread(JobMonitor.from_job_id, make_client(user), job_id)
        assert unknown.status == "unknown" and unknown.job is None
        assert unknown.message.failed
        assert f"job {job_id} is not one of your jobs" in unknown.message.text
        assert unknown.stop_button.disabled and unknown.download_button.disabled
        assert unknown.refresh_button.disabled
        assert await in_thread(unknown.download) is None
    # A wrong project id: the server's refusal, shown.
    wrong = await in_thread(JobMonitor, client, 999_999, failed.id)
    assert wrong.status == "unknown" and "404" in wrong.message.text
    assert JobMonitor(client).message.text == "no job id given"
