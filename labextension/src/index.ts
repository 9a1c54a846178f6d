/**
 * Fractal in JupyterLab, kernel-free, over fractal-jupyter's REST API: a sidebar of projects
 * (datasets, workflows, jobs), main-area views of a job, a dataset and a workflow, "Open in a
 * notebook", a notification when one of the user's jobs ends, a launcher card and commands.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  MainAreaWidget,
  Notification
} from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { FractalApi, IJob } from './api';
import { CommandIDs } from './commands';
import { DatasetView } from './datasetview';
import { JobView } from './jobview';
import { createNotebook, NotebookTarget } from './notebook';
import { FractalSidebar } from './sidebar';
import { JobWatcher } from './watcher';
import { WorkflowView } from './workflowview';
import fractalSvg from '../style/icons/fractal.svg';

export const fractalIcon = new LabIcon({
  name: 'fractal-jupyter:fractal',
  svgstr: fractalSvg
});

const CATEGORY = 'Fractal';

function notebookTarget(
  kind: string,
  projectId: number,
  id: number
): NotebookTarget {
  switch (kind) {
    case 'dataset':
      return { kind, projectId, datasetId: id };
    case 'workflow':
      return { kind, projectId, workflowId: id };
    case 'job':
      return { kind, projectId, jobId: id };
  }
  throw new Error(`"Open in a notebook" knows dataset, workflow and job, not ${kind}`);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'fractal-jupyter-labextension:plugin',
  description:
    'Fractal projects, datasets, workflows and jobs in a sidebar, with job, dataset and workflow views',
  autoStart: true,
  optional: [ICommandPalette, ILauncher, IDefaultFileBrowser],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    launcher: ILauncher | null,
    fileBrowser: IDefaultFileBrowser | null
  ) => {
    const { commands, shell } = app;
    const api = new FractalApi(app.serviceManager.serverSettings);
    const watcher = new JobWatcher(api);
    const sidebar = new FractalSidebar(api, watcher, commands);
    sidebar.id = 'fractal-sidebar';
    sidebar.title.icon = fractalIcon;
    sidebar.title.caption = 'Fractal';
    shell.add(sidebar, 'left', { rank: 600 });

    const views = new Map<string, MainAreaWidget>();
    const show = (id: string, make: () => Widget): void => {
      let view = views.get(id);
      if (!view || view.isDisposed) {
        const content = make();
        view = new MainAreaWidget({ content });
        view.id = `${content.id}-area`;
        view.title.label = content.title.label;
        view.title.icon = fractalIcon;
        view.title.closable = true;
        content.title.changed.connect(() => {
          view!.title.label = content.title.label;
        });
        views.set(id, view);
        shell.add(view, 'main');
      }
      shell.activateById(view.id);
    };

    const openInNotebook = async (target: NotebookTarget): Promise<void> => {
      try {
        const directory = fileBrowser?.model.path ?? '';
        const path = await createNotebook(
          app.serviceManager.contents,
          directory,
          target
        );
        // With the default kernel, so that the cells can run at once (no kernel dialog).
        const kernel =
          app.serviceManager.kernelspecs.specs?.default ?? 'python3';
        await commands.execute('docmanager:open', {
          path,
          factory: 'Notebook',
          kernel: { name: kernel }
        });
      } catch (error) {
        Notification.error(
          `Could not create the notebook: ${(error as Error).message}`,
          { autoClose: false }
        );
      }
    };

    commands.addCommand(CommandIDs.openSidebar, {
      label: args => (args.isLauncher ? 'Fractal' : 'Open the Fractal sidebar'),
      caption: "Fractal's projects, datasets, workflows and jobs",
      icon: args => (args.isLauncher ? fractalIcon : undefined),
      execute: () => {
        shell.activateById(sidebar.id);
      }
    });

    commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh Fractal projects and jobs',
      execute: () => sidebar.refresh()
    });

    commands.addCommand(CommandIDs.openJob, {
      label: args => `Fractal: Open job ${args.jobId ?? ''}`,
      execute: args => {
        const projectId = Number(args.projectId);
        const jobId = Number(args.jobId);
        show(`job-${jobId}`, () => {
          const view = new JobView({
            api,
            projectId,
            jobId,
            openNotebook: () =>
              void openInNotebook({ kind: 'job', projectId, jobId }),
            statusChanged: job => {
              if (job.status === 'submitted') {
                watcher.hurry();
              }
            }
          });
          return view;
        });
      }
    });

    commands.addCommand(CommandIDs.openDataset, {
      label: args => `Fractal: Open dataset ${args.datasetId ?? ''}`,
      execute: args => {
        const projectId = Number(args.projectId);
        const datasetId = Number(args.datasetId);
        show(
          `dataset-${datasetId}`,
          () =>
            new DatasetView({
              api,
              projectId,
              datasetId,
              openNotebook: () =>
                void openInNotebook({ kind: 'dataset', projectId, datasetId })
            })
        );
      }
    });

    commands.addCommand(CommandIDs.openWorkflow, {
      label: args => `Fractal: Open workflow ${args.workflowId ?? ''}`,
      execute: args => {
        const projectId = Number(args.projectId);
        const workflowId = Number(args.workflowId);
        show(
          `workflow-${workflowId}`,
          () =>
            new WorkflowView({
              api,
              projectId,
              workflowId,
              openNotebook: () =>
                void openInNotebook({ kind: 'workflow', projectId, workflowId })
            })
        );
      }
    });

    commands.addCommand(CommandIDs.openInNotebook, {
      label: 'Fractal: Open in a notebook',
      execute: args =>
        openInNotebook(
          notebookTarget(
            String(args.kind),
            Number(args.projectId),
            Number(args.id)
          )
        )
    });

    // A notification when one of the user's jobs ends, with a button to its view.
    watcher.jobEnded.connect((_, job: IJob) => {
      const message = `Fractal job ${job.id} ${job.status === 'done' ? 'is done' : 'failed'}`;
      const options = {
        autoClose: 10000 as const,
        actions: [
          {
            label: 'Open job',
            caption: `Open the view of job ${job.id}`,
            callback: () =>
              void commands.execute(CommandIDs.openJob, {
                projectId: job.project_id ?? 0,
                jobId: job.id
              })
          }
        ]
      };
      if (job.status === 'done') {
        Notification.success(message, options);
      } else {
        Notification.error(message, options);
      }
    });

    if (palette) {
      for (const command of [CommandIDs.openSidebar, CommandIDs.refresh]) {
        palette.addItem({ command, category: CATEGORY });
      }
    }
    if (launcher) {
      launcher.add({
        command: CommandIDs.openSidebar,
        category: 'Other',
        rank: 1,
        args: { isLauncher: true }
      });
    }

    watcher.start();
    void app.restored.then(() => sidebar.refresh());
  }
};

export default plugin;
