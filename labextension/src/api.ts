/**
 * Typed calls to fractal-jupyter's REST API, `<base_url>fractal/api/v2/...` (the contract is
 * the server's own OpenAPI document, `<base_url>fractal/openapi.json`).
 *
 * Every call goes through JupyterLab's `ServerConnection`: the user's Jupyter credentials and
 * the XSRF header come from the settings, as for JupyterLab's own requests.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export type JobStatus = 'submitted' | 'done' | 'failed';
export type TaskStatus = 'pending' | 'submitted' | 'done' | 'failed';
export type AttributeValue = string | number | boolean;

export interface IProject {
  id: number;
  name: string;
  timestamp_created: string;
}

export interface IFilters {
  attributes: Record<string, AttributeValue | null>;
  types: Record<string, boolean>;
}

export interface IDataset {
  id: number;
  name: string;
  project_id: number;
  zarr_dir: string;
  filters: IFilters;
  timestamp_created: string;
}

export interface ITask {
  id: number;
  name: string;
  type: string;
  source: string;
  version: string | null;
}

export interface IWorkflowTask {
  id: number;
  workflow_id: number;
  order: number | null;
  task_type: string;
  task_id: number;
  task: ITask;
  meta_non_parallel: Record<string, unknown> | null;
  meta_parallel: Record<string, unknown> | null;
  args_non_parallel: Record<string, unknown> | null;
  args_parallel: Record<string, unknown> | null;
  input_filters: IFilters;
}

export interface IWorkflow {
  id: number;
  name: string;
  project_id: number;
  task_list: IWorkflowTask[];
  timestamp_created: string;
}

export interface IJob {
  id: number;
  project_id: number | null;
  workflow_id: number | null;
  dataset_id: number | null;
  user_email: string;
  status: JobStatus;
  start_timestamp: string;
  end_timestamp: string | null;
  log: string | null;
  working_dir: string | null;
  first_task_index: number;
  last_task_index: number;
  workflow_dump: Record<string, unknown>;
  dataset_dump: Record<string, unknown>;
  project_dump: Record<string, unknown>;
}

export interface ITaskProgress {
  workflow_task_id: number;
  order: number | null;
  task_name: string;
  /** The task's type (null: the workflow task is gone). */
  task_type?: string | null;
  status: TaskStatus;
  calls_total: number | null;
  calls_done: number;
  /** The task's input images in this job by the status of their latest run. */
  images_submitted?: number;
  images_done?: number;
  images_failed?: number;
}

export interface IJobProgress {
  job_id: number;
  status: JobStatus;
  tasks: ITaskProgress[];
}

export interface IImage {
  zarr_url: string;
  origin: string | null;
  attributes: Record<string, AttributeValue>;
  types: Record<string, boolean>;
}

export interface IImagePage {
  total_count: number;
  page_size: number;
  current_page: number;
  /** Every value of each attribute in the dataset: what the filters offer. */
  attributes: Record<string, AttributeValue[]>;
  types: string[];
  images: IImage[];
}

export interface IImageQuery {
  page?: number;
  pageSize?: number;
  filters?: Partial<IFilters>;
}

/** An answer of the API that is not a success: `detail` is the API's own explanation. */
export class FractalApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: unknown
  ) {
    super(`${status}: ${describeDetail(detail)}`);
    this.name = 'FractalApiError';
  }
}

/**
 * The API's `detail` as one line: a string as it is, a list of validation errors as
 * "location: message" items, anything else as JSON.
 */
export function describeDetail(detail: unknown): string {
  if (typeof detail === 'string') {
    return detail;
  }
  if (Array.isArray(detail)) {
    return detail
      .map(item => {
        if (item && typeof item === 'object' && 'msg' in item) {
          const loc = Array.isArray(item.loc) ? item.loc.join('.') : '';
          return loc ? `${loc}: ${item.msg}` : String(item.msg);
        }
        return JSON.stringify(item);
      })
      .join('; ');
  }
  return JSON.stringify(detail);
}

type Query = Record<string, string | number | boolean | undefined>;

export class FractalApi {
  constructor(
    readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  /** The URL of `path` (below `fractal/`), with `query`'s defined values. */
  url(path: string, query: Query = {}): string {
    const url = URLExt.join(this.settings.baseUrl, 'fractal', path);
    const params = Object.entries(query)
      .filter(([, value]) => value !== undefined)
      .map(
        ([key, value]) =>
          `${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`
      );
    return params.length ? `${url}?${params.join('&')}` : url;
  }

  /** One call: the decoded JSON answer (undefined when empty), or a FractalApiError. */
  async request<T>(
    method: string,
    path: string,
    options: { query?: Query; body?: unknown } = {}
  ): Promise<T> {
    const init: RequestInit = { method };
    if (options.body !== undefined) {
      init.body = JSON.stringify(options.body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    const response = await ServerConnection.makeRequest(
      this.url(path, options.query),
      init,
      this.settings
    );
    const text = await response.text();
    let data: unknown = undefined;
    let isJson = false;
    if (text) {
      try {
        data = JSON.parse(text);
        isJson = true;
      } catch {
        data = text;
      }
    }
    if (!response.ok) {
      let detail: unknown;
      if (isJson && data && typeof data === 'object' && 'detail' in data) {
        detail = (data as { detail: unknown }).detail;
      } else if (isJson) {
        detail = data;
      } else {
        // Not the API's answer (a proxy's or Jupyter's own error page): its status line.
        detail = response.statusText || `HTTP ${response.status}`;
      }
      throw new FractalApiError(response.status, detail);
    }
    return data as T;
  }

  listProjects(): Promise<IProject[]> {
    return this.request('GET', 'api/v2/project/');
  }

  listDatasets(projectId: number): Promise<IDataset[]> {
    return this.request('GET', `api/v2/project/${projectId}/dataset/`);
  }

  getDataset(projectId: number, datasetId: number): Promise<IDataset> {
    return this.request(
      'GET',
      `api/v2/project/${projectId}/dataset/${datasetId}/`
    );
  }

  listWorkflows(projectId: number): Promise<IWorkflow[]> {
    return this.request('GET', `api/v2/project/${projectId}/workflow/`);
  }

  getWorkflow(projectId: number, workflowId: number): Promise<IWorkflow> {
    return this.request(
      'GET',
      `api/v2/project/${projectId}/workflow/${workflowId}/`
    );
  }

  /** A project's jobs, without their logs (`log=false`: the list stays small). */
  listJobs(projectId: number): Promise<IJob[]> {
    return this.request('GET', `api/v2/project/${projectId}/job/`, {
      query: { log: false }
    });
  }

  /** The jobs of all the user's projects, without their logs. */
  listUserJobs(): Promise<IJob[]> {
    return this.request('GET', 'api/v2/job/', { query: { log: false } });
  }

  /** One job; with `showTmpLogs`, a running job's log as it grows. */
  getJob(
    projectId: number,
    jobId: number,
    showTmpLogs = false
  ): Promise<IJob> {
    return this.request('GET', `api/v2/project/${projectId}/job/${jobId}/`, {
      query: { show_tmp_logs: showTmpLogs || undefined }
    });
  }

  getJobProgress(projectId: number, jobId: number): Promise<IJobProgress> {
    return this.request(
      'GET',
      `api/v2/project/${projectId}/job/${jobId}/progress/`
    );
  }

  async stopJob(projectId: number, jobId: number): Promise<void> {
    await this.request(
      'GET',
      `api/v2/project/${projectId}/job/${jobId}/stop/`
    );
  }

  /** One page of a dataset's images matching `filters`: paged by the server. */
  queryImages(
    projectId: number,
    datasetId: number,
    query: IImageQuery = {}
  ): Promise<IImagePage> {
    return this.request(
      'POST',
      `api/v2/project/${projectId}/dataset/${datasetId}/images/query/`,
      {
        query: { page: query.page, page_size: query.pageSize },
        body: {
          filters: {
            attributes: query.filters?.attributes ?? {},
            types: query.filters?.types ?? {}
          }
        }
      }
    );
  }
}
