/**
 * A job in the main area: its status, the progress of each task, the log as it grows, Stop.
 * While the job runs it is read again every second (never waiting on the previous answer's
 * rendering); once it has ended, once more and no longer.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { FractalApi, IJob, IJobProgress } from './api';
import { ErrorLine, formatTime, StatusBadge } from './components';
import { OpenNotebookButton, setUpPanel } from './panel';
import { imagesText, plainLog, taskPhrase } from './wording';

export const JOB_POLL_MS = 1000;

export interface IJobViewOptions {
  api: FractalApi;
  projectId: number;
  jobId: number;
  openNotebook: () => void;
  /** Told when the view sees the job's status change (the sidebar's list follows). */
  statusChanged?: (job: IJob) => void;
}

export class JobView extends ReactWidget {
  constructor(readonly options: IJobViewOptions) {
    super();
    setUpPanel(
      this,
      'job',
      options.projectId,
      options.jobId,
      `Job ${options.jobId}`
    );
    void this.refresh();
  }

  dispose(): void {
    window.clearTimeout(this._timer);
    super.dispose();
  }

  async refresh(): Promise<void> {
    window.clearTimeout(this._timer);
    const { api, projectId, jobId } = this.options;
    try {
      const [job, progress] = await Promise.all([
        api.getJob(projectId, jobId, true),
        api.getJobProgress(projectId, jobId)
      ]);
      if (this._job?.status !== job.status) {
        this.options.statusChanged?.(job);
      }
      this._job = job;
      this._progress = progress;
      this._error = null;
    } catch (error) {
      this._error = error as Error;
    }
    if (this.isDisposed) {
      return;
    }
    this.update();
    if (!this._job || this._job.status === 'submitted') {
      this._timer = window.setTimeout(() => void this.refresh(), JOB_POLL_MS);
    }
  }

  private async _stop(): Promise<void> {
    this._stopping = true;
    this.update();
    try {
      await this.options.api.stopJob(this.options.projectId, this.options.jobId);
    } catch (error) {
      this._error = error as Error;
    }
    this._stopping = false;
    await this.refresh();
  }

  protected render(): JSX.Element {
    const job = this._job;
    const running = job?.status === 'submitted';
    return (
      <div className="fractal-panel-body">
        <div className="fractal-panel-header">
          <h2>
            Job {this.options.jobId}{' '}
            {job && <StatusBadge status={job.status} />}
          </h2>
          <div className="fractal-actions">
            <button
              className="jp-Button jp-mod-styled jp-mod-warn fractal-stop"
              disabled={!running || this._stopping}
              onClick={() => void this._stop()}
            >
              Stop
            </button>
            <OpenNotebookButton onClick={this.options.openNotebook} />
          </div>
        </div>
        <ErrorLine error={this._error} />
        {job && (
          <div className="fractal-job-facts">
            <div>
              Workflow {String(job.workflow_dump.name ?? job.workflow_id)} on
              dataset {String(job.dataset_dump.name ?? job.dataset_id)}
            </div>
            <div>
              Started {formatTime(job.start_timestamp)}
              {job.end_timestamp && `, ended ${formatTime(job.end_timestamp)}`}
            </div>
            {job.working_dir && <div>Folder {job.working_dir}</div>}
          </div>
        )}
        {this._progress && (
          <table className="fractal-table fractal-progress">
            <thead>
              <tr>
                <th>Step</th>
                <th>Task</th>
                <th>Status</th>
                <th>Progress</th>
              </tr>
            </thead>
            <tbody>
              {this._progress.tasks.map(task => (
                <tr key={task.workflow_task_id}>
                  <td>{task.order === null ? '' : task.order + 1}</td>
                  <td>{taskPhrase(task.task_name, task.task_type)}</td>
                  <td>
                    <StatusBadge status={task.status} />
                  </td>
                  <td>
                    <progress
                      max={task.calls_total ?? 1}
                      value={
                        task.calls_total === null
                          ? task.status === 'done'
                            ? 1
                            : 0
                          : task.calls_done
                      }
                    />{' '}
                    {imagesText(task)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <h3>Log</h3>
        <pre
          className="fractal-log"
          ref={element => {
            // Follow the log as it grows, unless the reader scrolled up.
            if (element && this._followLog) {
              element.scrollTop = element.scrollHeight;
            }
          }}
          onScroll={event => {
            const element = event.currentTarget;
            this._followLog =
              element.scrollTop + element.clientHeight >= element.scrollHeight - 4;
          }}
        >
          {plainLog(job?.log ?? '', this._typesByOrder())}
        </pre>
      </div>
    );
  }

  /** The workflow task types by position, for the log in plain words. */
  private _typesByOrder(): Record<number, string | null | undefined> {
    const types: Record<number, string | null | undefined> = {};
    for (const task of this._progress?.tasks ?? []) {
      if (task.order !== null) {
        types[task.order] = task.task_type;
      }
    }
    return types;
  }

  private _job: IJob | null = null;
  private _progress: IJobProgress | null = null;
  private _error: Error | null = null;
  private _stopping = false;
  private _followLog = true;
  private _timer = 0;
}
