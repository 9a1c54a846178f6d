import { FractalApi, IJob } from '../src/api';
import { FAST_INTERVAL_MS, JobWatcher, SLOWEST_INTERVAL_MS } from '../src/watcher';

function job(id: number, status: IJob['status']): IJob {
  return { id, status, project_id: 1 } as IJob;
}

/** A watcher over a fake API whose answers are the successive `answers`. */
function watcherOf(answers: Array<IJob[] | Error>): {
  watcher: JobWatcher;
  calls: () => number;
  ended: IJob[];
} {
  let calls = 0;
  const api = {
    listUserJobs: async () => {
      const answer = answers[Math.min(calls, answers.length - 1)];
      calls += 1;
      if (answer instanceof Error) {
        throw answer;
      }
      return answer.map(j => ({ ...j }));
    }
  } as unknown as FractalApi;
  const watcher = new JobWatcher(api);
  const ended: IJob[] = [];
  watcher.jobEnded.connect((_, j) => ended.push(j));
  return { watcher, calls: () => calls, ended };
}

/** Let the timers run `ms` and the polls they start answer. */
async function advance(ms: number): Promise<void> {
  await jest.advanceTimersByTimeAsync(ms);
}

describe('JobWatcher', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('tells once when a job seen running ends, and polls fast while one runs', async () => {
    const { watcher, calls, ended } = watcherOf([
      [job(1, 'done'), job(2, 'submitted')],
      [job(1, 'done'), job(2, 'submitted')],
      [job(1, 'done'), job(2, 'failed')]
    ]);
    watcher.start();
    await advance(0);
    expect(calls()).toBe(1);
    expect(watcher.jobs.map(j => j.id)).toEqual([2, 1]);
    await advance(FAST_INTERVAL_MS);
    expect(calls()).toBe(2);
    expect(ended).toEqual([]);
    await advance(FAST_INTERVAL_MS);
    expect(calls()).toBe(3);
    expect(ended.map(j => [j.id, j.status])).toEqual([[2, 'failed']]);
    await advance(SLOWEST_INTERVAL_MS);
    expect(ended).toHaveLength(1);
    watcher.stop();
  });

  it('backs off while nothing runs, up to the slowest interval', async () => {
    const { watcher, calls } = watcherOf([[job(1, 'done')]]);
    watcher.start();
    await advance(0);
    expect(calls()).toBe(1);
    await advance(FAST_INTERVAL_MS * 2 - 1);
    expect(calls()).toBe(1); // the interval doubled: 4 s
    await advance(1);
    expect(calls()).toBe(2);
    await advance(60 * 60 * 1000);
    const hourly = calls();
    await advance(SLOWEST_INTERVAL_MS);
    expect(calls()).toBe(hourly + 1);
    watcher.stop();
    await advance(SLOWEST_INTERVAL_MS * 2);
    expect(calls()).toBe(hourly + 1);
  });

  it('keeps the last jobs and says the error when the server does not answer', async () => {
    const { watcher, calls } = watcherOf([
      [job(1, 'submitted')],
      new Error('503: database unreachable'),
      [job(1, 'submitted')]
    ]);
    watcher.start();
    await advance(0);
    await advance(FAST_INTERVAL_MS);
    expect(calls()).toBe(2);
    expect(watcher.error?.message).toBe('503: database unreachable');
    expect(watcher.jobs.map(j => j.id)).toEqual([1]);
    await advance(FAST_INTERVAL_MS * 2);
    expect(calls()).toBe(3);
    expect(watcher.error).toBeNull();
    watcher.stop();
  });

  it('tells of a job that ran and ended between two polls, not of those ended before', async () => {
    const { watcher, ended } = watcherOf([
      [job(1, 'done')],
      [job(1, 'done'), job(2, 'done')]
    ]);
    watcher.start();
    await advance(0);
    expect(ended).toEqual([]);
    await watcher.refresh();
    expect(ended.map(j => j.id)).toEqual([2]);
    watcher.stop();
  });

  it('shares a poll under way: refresh twice, one call', async () => {
    const { watcher, calls } = watcherOf([[]]);
    await Promise.all([watcher.refresh(), watcher.refresh()]);
    expect(calls()).toBe(1);
    watcher.stop();
  });
});
