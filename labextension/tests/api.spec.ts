import { ServerConnection } from '@jupyterlab/services';

import { describeDetail, FractalApi, FractalApiError } from '../src/api';

interface ISeenRequest {
  method: string;
  url: string;
  headers: Headers;
  body: string;
}

/** An API whose requests go to `answer` (through ServerConnection.makeRequest). */
function fakeApi(
  answer: (request: ISeenRequest) => Response,
  baseUrl = 'http://127.0.0.1:8888/user/alice/'
): { api: FractalApi; seen: ISeenRequest[] } {
  const seen: ISeenRequest[] = [];
  const settings = ServerConnection.makeSettings({
    baseUrl,
    token: 'the-token',
    fetch: async (input: RequestInfo | URL) => {
      const request = input as Request;
      const body = await request.text();
      const entry = {
        method: request.method,
        // ServerConnection appends a timestamp to every URL against caches: left out here.
        url: request.url.replace(/[?&]\d+$/, ''),
        headers: request.headers,
        body
      };
      seen.push(entry);
      return answer(entry);
    }
  });
  return { api: new FractalApi(settings), seen };
}

function json(data: unknown, status = 200): Response {
  return new Response(JSON.stringify(data), {
    status,
    headers: { 'Content-Type': 'application/json' }
  });
}

describe('FractalApi', () => {
  it('calls <base_url>fractal/api/v2/... with the Jupyter credentials', async () => {
    const { api, seen } = fakeApi(() =>
      json([{ id: 1, name: 'demo', timestamp_created: 't' }])
    );
    const projects = await api.listProjects();
    expect(projects.map(p => p.name)).toEqual(['demo']);
    expect(seen).toHaveLength(1);
    expect(seen[0].method).toBe('GET');
    expect(seen[0].url).toBe(
      'http://127.0.0.1:8888/user/alice/fractal/api/v2/project/'
    );
    expect(seen[0].headers.get('Authorization')).toBe('token the-token');
  });

  it('lists jobs without their logs, and asks for the live log of one job', async () => {
    const { api, seen } = fakeApi(request =>
      json(request.url.includes('/job/7/') ? { id: 7, status: 'submitted' } : [])
    );
    await api.listJobs(3);
    await api.listUserJobs();
    const job = await api.getJob(3, 7, true);
    await api.getJob(3, 7);
    expect(job.status).toBe('submitted');
    expect(seen.map(r => r.url.replace('http://127.0.0.1:8888/user/alice/', ''))).toEqual([
      'fractal/api/v2/project/3/job/?log=false',
      'fractal/api/v2/job/?log=false',
      'fractal/api/v2/project/3/job/7/?show_tmp_logs=true',
      'fractal/api/v2/project/3/job/7/'
    ]);
  });

  it('queries a page of images with filters in the body and paging in the query', async () => {
    const page = {
      total_count: 2,
      page_size: 1,
      current_page: 2,
      attributes: { well: ['A01', 'A02'] },
      types: ['is_3D'],
      images: [
        { zarr_url: '/z/A02', origin: null, attributes: { well: 'A02' }, types: {} }
      ]
    };
    const { api, seen } = fakeApi(() => json(page));
    const answer = await api.queryImages(3, 4, {
      page: 2,
      pageSize: 1,
      filters: { attributes: { well: 'A02' } }
    });
    expect(answer.images[0].zarr_url).toBe('/z/A02');
    expect(seen[0].method).toBe('POST');
    expect(seen[0].url).toBe(
      'http://127.0.0.1:8888/user/alice/fractal/api/v2/project/3/dataset/4/images/query/?page=2&page_size=1'
    );
    expect(seen[0].headers.get('Content-Type')).toBe('application/json');
    expect(JSON.parse(seen[0].body)).toEqual({
      filters: { attributes: { well: 'A02' }, types: {} }
    });
  });

  it('reads progress, stops a job (empty answer) and reads a workflow', async () => {
    const { api, seen } = fakeApi(request => {
      if (request.url.endsWith('/stop/')) {
        return new Response(null, { status: 202 });
      }
      if (request.url.endsWith('/progress/')) {
        return json({ job_id: 7, status: 'submitted', tasks: [] });
      }
      return json({ id: 5, name: 'w', task_list: [] });
    });
    expect((await api.getJobProgress(3, 7)).job_id).toBe(7);
    await expect(api.stopJob(3, 7)).resolves.toBeUndefined();
    expect((await api.getWorkflow(3, 5)).name).toBe('w');
    expect(seen.map(r => r.url.split('/fractal/')[1])).toEqual([
      'api/v2/project/3/job/7/progress/',
      'api/v2/project/3/job/7/stop/',
      'api/v2/project/3/workflow/5/'
    ]);
  });

  it("turns an error answer into a FractalApiError that carries the API's detail", async () => {
    const { api } = fakeApi(() => json({ detail: 'Job 99 not found' }, 404));
    const error = await api.getJob(3, 99).catch(e => e);
    expect(error).toBeInstanceOf(FractalApiError);
    expect(error.status).toBe(404);
    expect(error.detail).toBe('Job 99 not found');
    expect(error.message).toBe('404: Job 99 not found');
  });

  it('describes validation errors and answers that are not JSON', async () => {
    const invalid = [
      { loc: ['query', 'page'], msg: 'Input should be a valid integer' },
      { loc: ['body', 'filters', 'types', 'x'], msg: 'not a bool' }
    ];
    const { api } = fakeApi(() => json({ detail: invalid }, 422));
    const error = await api.queryImages(1, 1).catch(e => e);
    expect(error.message).toBe(
      '422: query.page: Input should be a valid integer; body.filters.types.x: not a bool'
    );

    const { api: proxied } = fakeApi(
      () =>
        new Response('<html><body><h1>502</h1>...</body></html>', {
          status: 502,
          statusText: 'Bad Gateway'
        })
    );
    const gateway = await proxied.listProjects().catch(e => e);
    expect(gateway).toBeInstanceOf(FractalApiError);
    expect(gateway.message).toBe('502: Bad Gateway');
    const { api: bare } = fakeApi(() => new Response('', { status: 500 }));
    expect((await bare.listProjects().catch(e => e)).message).toBe('500: HTTP 500');
    expect(describeDetail({ a: 1 })).toBe('{"a":1}');
  });

  it('joins a base URL at the server root too', async () => {
    const { api } = fakeApi(() => json([]), 'http://localhost:8888/');
    expect(api.url('api/v2/job/', { log: false, skipped: undefined })).toBe(
      'http://localhost:8888/fractal/api/v2/job/?log=false'
    );
  });
});
