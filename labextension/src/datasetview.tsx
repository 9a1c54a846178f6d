/**
 * A dataset's images in the main area: one page at a time, asked of the server
 * (`images/query/?page=&page_size=`), so a dataset of 100,000 images is as quick as one of ten.
 * The filters offer the attribute values and types of the answer's summaries. An answer to a
 * query that was overtaken by a newer one is dropped.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import {
  AttributeValue,
  FractalApi,
  IDataset,
  IFilters,
  IImagePage
} from './api';
import { ErrorLine } from './components';
import { OpenNotebookButton, setUpPanel } from './panel';

export const PAGE_SIZE = 50;

export interface IDatasetViewOptions {
  api: FractalApi;
  projectId: number;
  datasetId: number;
  openNotebook: () => void;
}

export class DatasetView extends ReactWidget {
  constructor(readonly options: IDatasetViewOptions) {
    super();
    setUpPanel(
      this,
      'dataset',
      options.projectId,
      options.datasetId,
      `Dataset ${options.datasetId}`
    );
    void this._loadDataset();
    void this.query();
  }

  get filters(): IFilters {
    return this._filters;
  }

  get page(): number {
    return this._page;
  }

  /** Ask for `page` with the current filters; the view shows the newest answer only. */
  async query(page = this._page): Promise<void> {
    const sequence = ++this._sequence;
    this._page = page;
    this._loading = true;
    this.update();
    try {
      const answer = await this.options.api.queryImages(
        this.options.projectId,
        this.options.datasetId,
        { page, pageSize: PAGE_SIZE, filters: this._filters }
      );
      if (sequence !== this._sequence) {
        return;
      }
      this._answer = answer;
      for (const [key, values] of Object.entries(answer.attributes)) {
        const known = this._attributeValues.get(key) ?? [];
        const seen = new Set(known.map(value => JSON.stringify(value)));
        for (const value of values) {
          if (!seen.has(JSON.stringify(value))) {
            known.push(value);
          }
        }
        known.sort((a, b) => String(a).localeCompare(String(b), undefined, { numeric: true }));
        this._attributeValues.set(key, known);
      }
      answer.types.forEach(type => this._types.add(type));
      this._error = null;
    } catch (error) {
      if (sequence !== this._sequence) {
        return;
      }
      this._error = error as Error;
    }
    this._loading = false;
    this.update();
  }

  setAttributeFilter(key: string, value: AttributeValue | undefined): void {
    const attributes = { ...this._filters.attributes };
    if (value === undefined) {
      delete attributes[key];
    } else {
      attributes[key] = value;
    }
    this._filters = { ...this._filters, attributes };
    void this.query(1);
  }

  setTypeFilter(key: string, value: boolean | undefined): void {
    const types = { ...this._filters.types };
    if (value === undefined) {
      delete types[key];
    } else {
      types[key] = value;
    }
    this._filters = { ...this._filters, types };
    void this.query(1);
  }

  private async _loadDataset(): Promise<void> {
    try {
      this._dataset = await this.options.api.getDataset(
        this.options.projectId,
        this.options.datasetId
      );
      this.title.label = this._dataset.name;
      this.update();
    } catch (error) {
      this._error = error as Error;
      this.update();
    }
  }

  protected render(): JSX.Element {
    const answer = this._answer;
    const pages = answer
      ? Math.max(1, Math.ceil(answer.total_count / Math.max(answer.page_size, 1)))
      : 1;
    const attributeKeys = [...this._attributeValues.keys()].sort();
    const types = [...this._types].sort();
    const zarrDir = this._dataset?.zarr_dir ?? '';
    return (
      <div className="fractal-panel-body">
        <div className="fractal-panel-header">
          <h2>{this._dataset?.name ?? `Dataset ${this.options.datasetId}`}</h2>
          <div className="fractal-actions">
            <OpenNotebookButton onClick={this.options.openNotebook} />
          </div>
        </div>
        {zarrDir && <div className="fractal-job-facts">{zarrDir}</div>}
        <div className="fractal-filters">
          {attributeKeys.map(key => (
            <label key={`a-${key}`}>
              {key}{' '}
              <select
                data-attribute={key}
                value={
                  key in this._filters.attributes
                    ? JSON.stringify(this._filters.attributes[key])
                    : ''
                }
                onChange={event =>
                  this.setAttributeFilter(
                    key,
                    event.currentTarget.value === ''
                      ? undefined
                      : JSON.parse(event.currentTarget.value)
                  )
                }
              >
                <option value="">any</option>
                {(this._attributeValues.get(key) ?? []).map(value => (
                  <option key={JSON.stringify(value)} value={JSON.stringify(value)}>
                    {String(value)}
                  </option>
                ))}
              </select>
            </label>
          ))}
          {types.map(type => (
            <label key={`t-${type}`}>
              {type}{' '}
              <select
                data-type={type}
                value={type in this._filters.types ? String(this._filters.types[type]) : ''}
                onChange={event =>
                  this.setTypeFilter(
                    type,
                    event.currentTarget.value === ''
                      ? undefined
                      : event.currentTarget.value === 'true'
                  )
                }
              >
                <option value="">any</option>
                <option value="true">true</option>
                <option value="false">false</option>
              </select>
            </label>
          ))}
        </div>
        <div className="fractal-pager">
          <button
            className="jp-Button jp-mod-styled fractal-previous"
            disabled={this._page <= 1}
            onClick={() => void this.query(this._page - 1)}
          >
            Previous
          </button>
          <span className="fractal-page-info">
            {answer
              ? `page ${answer.current_page} of ${pages}, ${answer.total_count} image(s)`
              : ''}
            {this._loading ? ' (loading)' : ''}
          </span>
          <button
            className="jp-Button jp-mod-styled fractal-next"
            disabled={!answer || this._page >= pages}
            onClick={() => void this.query(this._page + 1)}
          >
            Next
          </button>
        </div>
        <ErrorLine error={this._error} />
        <table className="fractal-table fractal-images">
          <thead>
            <tr>
              <th>zarr_url</th>
              {attributeKeys.map(key => (
                <th key={`a-${key}`}>{key}</th>
              ))}
              {types.map(type => (
                <th key={`t-${type}`}>{type}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {(answer?.images ?? []).map(image => (
              <tr key={image.zarr_url}>
                <td title={image.zarr_url}>
                  {zarrDir && image.zarr_url.startsWith(zarrDir)
                    ? image.zarr_url.slice(zarrDir.length).replace(/^\//, '')
                    : image.zarr_url}
                </td>
                {attributeKeys.map(key => (
                  <td key={`a-${key}`}>
                    {key in image.attributes ? String(image.attributes[key]) : ''}
                  </td>
                ))}
                {types.map(type => (
                  <td key={`t-${type}`}>
                    {type in image.types ? String(image.types[type]) : ''}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    );
  }

  private _dataset: IDataset | null = null;
  private _answer: IImagePage | null = null;
  private _filters: IFilters = { attributes: {}, types: {} };
  private _attributeValues = new Map<string, AttributeValue[]>();
  private _types = new Set<string>();
  private _page = 1;
  private _sequence = 0;
  private _loading = false;
  private _error: Error | null = null;
}
