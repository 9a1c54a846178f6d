/**
 * "Open in a notebook": a new notebook next to the user's files, with the cells that create a
 * FractalClient and the matching widget of `fractal_jupyter.widgets`, so that editing happens
 * where it is already built.
 */
import { Contents } from '@jupyterlab/services';

export type NotebookTarget =
  | { kind: 'dataset'; projectId: number; datasetId: number }
  | { kind: 'workflow'; projectId: number; workflowId: number }
  | { kind: 'job'; projectId: number; jobId: number };

/** The notebook's file stem and its cells' sources for `target`. */
export function notebookCells(target: NotebookTarget): {
  stem: string;
  title: string;
  cells: string[];
} {
  let widget: string;
  let call: string;
  let stem: string;
  let title: string;
  switch (target.kind) {
    case 'dataset':
      widget = 'ImageBrowser';
      call = `ImageBrowser(client, project_id=${target.projectId}, dataset_id=${target.datasetId})`;
      stem = `fractal-dataset-${target.datasetId}`;
      title = `Dataset ${target.datasetId} of project ${target.projectId}`;
      break;
    case 'workflow':
      widget = 'WorkflowBuilder';
      call = `WorkflowBuilder(client, project_id=${target.projectId}, workflow_id=${target.workflowId})`;
      stem = `fractal-workflow-${target.workflowId}`;
      title = `Workflow ${target.workflowId} of project ${target.projectId}`;
      break;
    case 'job':
      widget = 'JobMonitor';
      call = `JobMonitor(client, project_id=${target.projectId}, job_id=${target.jobId})`;
      stem = `fractal-job-${target.jobId}`;
      title = `Job ${target.jobId} of project ${target.projectId}`;
      break;
  }
  return {
    stem,
    title,
    cells: [
      `# ${title}\n\nOpened from JupyterLab's Fractal sidebar: run the cells.`,
      'from fractal_jupyter.client import FractalClient\n' +
        `from fractal_jupyter.widgets import ${widget}\n\n` +
        'client = FractalClient()',
      call
    ]
  };
}

/** The notebook's JSON (nbformat 4) with a markdown cell then code cells. */
export function notebookContent(cells: string[]): Record<string, unknown> {
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {
      kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' },
      language_info: { name: 'python' }
    },
    cells: cells.map((source, index) => ({
      id: `fractal-${index}`,
      cell_type: index === 0 ? 'markdown' : 'code',
      metadata: {},
      source,
      ...(index === 0 ? {} : { outputs: [], execution_count: null })
    }))
  };
}

/**
 * Write the notebook into `directory` (the file browser's), under a name not taken yet
 * (`fractal-dataset-4.ipynb`, then `fractal-dataset-4-1.ipynb`, ...); its path.
 */
export async function createNotebook(
  contents: Contents.IManager,
  directory: string,
  target: NotebookTarget
): Promise<string> {
  const { stem, cells } = notebookCells(target);
  const prefix = directory ? `${directory.replace(/\/$/, '')}/` : '';
  for (let attempt = 0; attempt < 100; attempt++) {
    const path = `${prefix}${stem}${attempt ? `-${attempt}` : ''}.ipynb`;
    try {
      await contents.get(path, { content: false });
      continue; // taken
    } catch {
      // not there: ours
    }
    await contents.save(path, {
      type: 'notebook',
      format: 'json',
      content: notebookContent(cells)
    });
    return path;
  }
  throw new Error(`${prefix}${stem}-*.ipynb: no free name left`);
}
