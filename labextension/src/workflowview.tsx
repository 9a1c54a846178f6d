/** A workflow in the main area, read-only: its tasks in order, with their arguments. */
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { FractalApi, IWorkflow } from './api';
import { ErrorLine } from './components';
import { OpenNotebookButton, setUpPanel } from './panel';
import { partTitle, taskTypeWords } from './wording';

export interface IWorkflowViewOptions {
  api: FractalApi;
  projectId: number;
  workflowId: number;
  openNotebook: () => void;
}

function Arguments(props: {
  label: string;
  values: Record<string, unknown> | null;
}): JSX.Element | null {
  if (!props.values || Object.keys(props.values).length === 0) {
    return null;
  }
  return (
    <div className="fractal-arguments">
      <div className="fractal-arguments-label">{props.label}</div>
      <pre>{JSON.stringify(props.values, null, 2)}</pre>
    </div>
  );
}

export class WorkflowView extends ReactWidget {
  constructor(readonly options: IWorkflowViewOptions) {
    super();
    setUpPanel(
      this,
      'workflow',
      options.projectId,
      options.workflowId,
      `Workflow ${options.workflowId}`
    );
    void this.refresh();
  }

  async refresh(): Promise<void> {
    try {
      this._workflow = await this.options.api.getWorkflow(
        this.options.projectId,
        this.options.workflowId
      );
      this.title.label = this._workflow.name;
      this._error = null;
    } catch (error) {
      this._error = error as Error;
    }
    this.update();
  }

  protected render(): JSX.Element {
    const workflow = this._workflow;
    const tasks = [...(workflow?.task_list ?? [])].sort(
      (a, b) => (a.order ?? 0) - (b.order ?? 0)
    );
    return (
      <div className="fractal-panel-body">
        <div className="fractal-panel-header">
          <h2>{workflow?.name ?? `Workflow ${this.options.workflowId}`}</h2>
          <div className="fractal-actions">
            <OpenNotebookButton onClick={this.options.openNotebook} />
          </div>
        </div>
        <ErrorLine error={this._error} />
        <ol className="fractal-workflow-tasks">
          {tasks.map(step => (
            <li key={step.id} className="fractal-workflow-task">
              <div className="fractal-workflow-task-name">
                {step.task.name}{' '}
                <span className="fractal-muted">
                  {taskTypeWords(step.task_type)}
                  {step.task.version ? `, version ${step.task.version}` : ''}
                </span>
              </div>
              <Arguments
                label={`Arguments (${partTitle(step.task_type, 'non_parallel')})`}
                values={step.args_non_parallel}
              />
              <Arguments
                label={`Arguments (${partTitle(step.task_type, 'parallel')})`}
                values={step.args_parallel}
              />
              <Arguments
                label={`Resources (${partTitle(step.task_type, 'non_parallel')})`}
                values={step.meta_non_parallel}
              />
              <Arguments
                label={`Resources (${partTitle(step.task_type, 'parallel')})`}
                values={step.meta_parallel}
              />
            </li>
          ))}
        </ol>
        {workflow && tasks.length === 0 && <div>This workflow has no tasks yet.</div>}
      </div>
    );
  }

  private _workflow: IWorkflow | null = null;
  private _error: Error | null = null;
}
