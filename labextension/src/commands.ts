export namespace CommandIDs {
  export const openSidebar = 'fractal:open-sidebar';
  export const refresh = 'fractal:refresh';
  export const openJob = 'fractal:open-job';
  export const openDataset = 'fractal:open-dataset';
  export const openWorkflow = 'fractal:open-workflow';
  export const openInNotebook = 'fractal:open-in-notebook';
}
