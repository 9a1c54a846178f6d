import { Contents } from '@jupyterlab/services';

import { createNotebook, notebookCells } from '../src/notebook';

describe('Open in a notebook', () => {
  it('makes the cells of the matching widget', () => {
    const dataset = notebookCells({ kind: 'dataset', projectId: 1, datasetId: 4 });
    expect(dataset.stem).toBe('fractal-dataset-4');
    expect(dataset.cells[1]).toContain('from fractal_jupyter.widgets import ImageBrowser');
    expect(dataset.cells[1]).toContain('client = FractalClient()');
    expect(dataset.cells[2]).toBe('ImageBrowser(client, project_id=1, dataset_id=4)');
    expect(notebookCells({ kind: 'workflow', projectId: 2, workflowId: 3 }).cells[2]).toBe(
      'WorkflowBuilder(client, project_id=2, workflow_id=3)'
    );
    expect(notebookCells({ kind: 'job', projectId: 2, jobId: 9 }).cells[2]).toBe(
      'JobMonitor(client, project_id=2, job_id=9)'
    );
  });

  it('writes the notebook in the folder under a name not taken yet', async () => {
    const files = new Set(['work/fractal-job-9.ipynb', 'work/fractal-job-9-1.ipynb']);
    const saved: Array<[string, Partial<Contents.IModel>]> = [];
    const contents = {
      get: async (path: string) => {
        if (!files.has(path)) {
          throw new Error(`${path}: not found`);
        }
        return { path };
      },
      save: async (path: string, model: Partial<Contents.IModel>) => {
        saved.push([path, model]);
        files.add(path);
        return { path };
      }
    } as unknown as Contents.IManager;
    const target = { kind: 'job' as const, projectId: 2, jobId: 9 };
    expect(await createNotebook(contents, 'work/', target)).toBe('work/fractal-job-9-2.ipynb');
    expect(await createNotebook(contents, '', target)).toBe('fractal-job-9.ipynb');
    const [, model] = saved[0];
    expect(model.type).toBe('notebook');
    const notebook = model.content as {
      cells: Array<{ cell_type: string; source: string }>;
      metadata: { kernelspec: { name: string } };
    };
    expect(notebook.cells.map(c => c.cell_type)).toEqual(['markdown', 'code', 'code']);
    expect(notebook.cells[2].source).toBe('JobMonitor(client, project_id=2, job_id=9)');
    expect(notebook.metadata.kernelspec.name).toBe('python3');
  });
});
