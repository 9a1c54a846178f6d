import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'fractal-jupyter-labextension:plugin',
  description: 'Fractal in JupyterLab',
  autoStart: true,
  activate: (app: JupyterFrontEnd) => {
    console.log('fractal-jupyter-labextension activated');
  }
};

export default plugin;
