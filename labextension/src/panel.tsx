/** What the main-area views of a dataset, a job and a workflow have in common. */
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

/**
 * Make `view` a closable main-area panel of one `kind` of item (`dataset`, `job`,
 * `workflow`), with an id that is the same each time the item is opened.
 */
export function setUpPanel(
  view: ReactWidget,
  kind: string,
  projectId: number,
  itemId: number,
  label: string
): void {
  view.addClass('fractal-panel');
  view.addClass(`fractal-${kind}-view`);
  view.id = `fractal-${kind}-${projectId}-${itemId}`;
  view.title.label = label;
  view.title.closable = true;
}

/** The header button that opens a notebook on the panel's item. */
export function OpenNotebookButton(props: {
  onClick: () => void;
}): JSX.Element {
  return (
    <button
      className="jp-Button jp-mod-styled fractal-open-notebook"
      onClick={props.onClick}
    >
      Open in a notebook
    </button>
  );
}
