/**
 * The Fractal sidebar: the user's projects, each with its datasets, workflows and jobs (a
 * badge for running/done/failed, live from the JobWatcher). Refreshing keeps showing what is
 * known until the answers come; nothing waits on the server.
 */
import { CommandRegistry } from '@lumino/commands';
import { ReactWidget, refreshIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { FractalApi, IDataset, IJob, IProject, IWorkflow } from './api';
import { ErrorLine, StatusBadge } from './components';
import { CommandIDs } from './commands';
import { JobWatcher } from './watcher';

/** Props that make an element act as a button: click, Enter or Space, in the tab order. */
function pressable(action: () => void): React.HTMLAttributes<HTMLElement> {
  return {
    role: 'button',
    tabIndex: 0,
    onClick: action,
    onKeyDown: event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        action();
      }
    }
  };
}

/** Projects are opened on the first load when there are this many or fewer. */
const OPEN_AT_START = 5;

interface IProjectContents {
  datasets: IDataset[];
  workflows: IWorkflow[];
  error: Error | null;
}

export class FractalSidebar extends ReactWidget {
  constructor(
    readonly api: FractalApi,
    readonly watcher: JobWatcher,
    readonly commands: CommandRegistry
  ) {
    super();
    this.addClass('fractal-sidebar');
    watcher.changed.connect(this._onJobs, this);
  }

  /** New jobs are shown; a job of a project not listed yet (made elsewhere) lists it. */
  private _onJobs(): void {
    const known = new Set((this._projects ?? []).map(project => project.id));
    const unknown = this.watcher.jobs
      .map(job => job.project_id)
      .filter(
        (id): id is number =>
          id !== null && !known.has(id) && !this._lookedFor.has(id)
      );
    if (this._projects !== null && unknown.length && this._refreshing === 0) {
      unknown.forEach(id => this._lookedFor.add(id)); // once each: no refresh loop
      void this.refresh();
    }
    this.update();
  }

  /** Read the projects (and the opened projects' contents) and the jobs again. */
  async refresh(): Promise<void> {
    this._refreshing += 1;
    this.update();
    const jobs = this.watcher.refresh();
    try {
      const projects = await this.api.listProjects();
      if (this._projects === null && projects.length <= OPEN_AT_START) {
        projects.forEach(project => this._open.add(project.id));
      }
      this._projects = projects;
      this._error = null;
      this.update();
      await Promise.all(
        projects
          .filter(project => this._open.has(project.id))
          .map(project => this._loadProject(project.id))
      );
    } catch (error) {
      this._error = error as Error;
    }
    await jobs;
    this._refreshing -= 1;
    this.update();
  }

  private async _loadProject(projectId: number): Promise<void> {
    try {
      const [datasets, workflows] = await Promise.all([
        this.api.listDatasets(projectId),
        this.api.listWorkflows(projectId)
      ]);
      this._contents.set(projectId, { datasets, workflows, error: null });
    } catch (error) {
      const known = this._contents.get(projectId);
      this._contents.set(projectId, {
        datasets: known?.datasets ?? [],
        workflows: known?.workflows ?? [],
        error: error as Error
      });
    }
    this.update();
  }

  private _toggle(projectId: number): void {
    if (this._open.has(projectId)) {
      this._open.delete(projectId);
    } else {
      this._open.add(projectId);
      void this._loadProject(projectId);
    }
    this.update();
  }

  private _notebookButton(
    args: Record<string, string | number>
  ): JSX.Element {
    return (
      <button
        className="fractal-item-button fractal-item-notebook"
        title="Open in a notebook"
        onKeyDown={event => event.stopPropagation()}
        onClick={event => {
          event.stopPropagation();
          void this.commands.execute(CommandIDs.openInNotebook, args);
        }}
      >
        notebook
      </button>
    );
  }

  private _renderProject(project: IProject): JSX.Element {
    const open = this._open.has(project.id);
    const contents = this._contents.get(project.id);
    const jobs = this.watcher.jobs.filter(job => job.project_id === project.id);
    return (
      <li key={project.id} className="fractal-project" data-project={project.name}>
        <div
          className="fractal-project-name"
          {...pressable(() => this._toggle(project.id))}
        >
          <span className="fractal-caret">{open ? '▾' : '▸'}</span> {project.name}
        </div>
        {open && (
          <div className="fractal-project-contents">
            <ErrorLine error={contents?.error ?? null} />
            <div className="fractal-section">Datasets</div>
            <ul>
              {(contents?.datasets ?? []).map(dataset => (
                <li
                  key={dataset.id}
                  className="fractal-item fractal-dataset"
                  {...pressable(
                    () =>
                      void this.commands.execute(CommandIDs.openDataset, {
                        projectId: project.id,
                        datasetId: dataset.id
                      })
                  )}
                >
                  <span className="fractal-item-name">{dataset.name}</span>
                  {this._notebookButton({
                    kind: 'dataset',
                    projectId: project.id,
                    id: dataset.id
                  })}
                </li>
              ))}
            </ul>
            <div className="fractal-section">Workflows</div>
            <ul>
              {(contents?.workflows ?? []).map(workflow => (
                <li
                  key={workflow.id}
                  className="fractal-item fractal-workflow"
                  {...pressable(
                    () =>
                      void this.commands.execute(CommandIDs.openWorkflow, {
                        projectId: project.id,
                        workflowId: workflow.id
                      })
                  )}
                >
                  <span className="fractal-item-name">{workflow.name}</span>
                  {this._notebookButton({
                    kind: 'workflow',
                    projectId: project.id,
                    id: workflow.id
                  })}
                </li>
              ))}
            </ul>
            <div className="fractal-section">Jobs</div>
            <ul>
              {jobs.map(job => this._renderJob(project.id, job))}
            </ul>
          </div>
        )}
      </li>
    );
  }

  private _renderJob(projectId: number, job: IJob): JSX.Element {
    const workflow = String(job.workflow_dump?.name ?? job.workflow_id ?? '');
    return (
      <li
        key={job.id}
        className="fractal-item fractal-job"
        data-job={job.id}
        {...pressable(
          () =>
            void this.commands.execute(CommandIDs.openJob, {
              projectId,
              jobId: job.id
            })
        )}
      >
        <span className="fractal-item-name">
          Job {job.id} <span className="fractal-muted">{workflow}</span>
        </span>
        <StatusBadge status={job.status} />
        {this._notebookButton({ kind: 'job', projectId, id: job.id })}
      </li>
    );
  }

  protected render(): JSX.Element {
    return (
      <div className="fractal-sidebar-body">
        <div className="fractal-sidebar-header">
          <span className="fractal-sidebar-title">Fractal</span>
          <button
            className="fractal-item-button fractal-refresh"
            title="Refresh"
            onClick={() => void this.refresh()}
          >
            <refreshIcon.react tag="span" />
          </button>
          {this._refreshing > 0 && (
            <span className="fractal-muted fractal-refreshing">refreshing</span>
          )}
        </div>
        <ErrorLine error={this._error ?? this.watcher.error} />
        {this._projects !== null && this._projects.length === 0 && (
          <div className="fractal-muted">No projects yet.</div>
        )}
        <ul className="fractal-projects">
          {(this._projects ?? []).map(project => this._renderProject(project))}
        </ul>
      </div>
    );
  }

  private _projects: IProject[] | null = null;
  private _contents = new Map<number, IProjectContents>();
  private _open = new Set<number>();
  private _error: Error | null = null;
  private _refreshing = 0;
  private _lookedFor = new Set<number>();
}
