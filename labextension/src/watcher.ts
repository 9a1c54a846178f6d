/**
 * The user's jobs, polled in the background: every 2 s while one of them runs, backing off
 * (doubling up to 30 s) while none runs or the server does not answer. Nothing waits on a
 * poll: views read the last answer and are told of a new one through `changed`.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { FractalApi, IJob } from './api';

export const FAST_INTERVAL_MS = 2000;
export const SLOWEST_INTERVAL_MS = 30000;

export class JobWatcher {
  constructor(readonly api: FractalApi) {}

  /** The last answer: every job of the user's projects, newest first. */
  get jobs(): readonly IJob[] {
    return this._jobs;
  }

  /** The last poll's error, or null when it succeeded. */
  get error(): Error | null {
    return this._error;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** A job seen running before has ended (done or failed). */
  get jobEnded(): ISignal<this, IJob> {
    return this._jobEnded;
  }

  start(): void {
    if (!this._stopped) {
      return;
    }
    this._stopped = false;
    void this.refresh();
  }

  stop(): void {
    this._stopped = true;
    clearTimeout(this._timer);
  }

  /** Poll now (the timer starts again from this poll); a poll under way is shared. */
  refresh(): Promise<void> {
    if (!this._pending) {
      clearTimeout(this._timer);
      this._pending = this._poll().finally(() => {
        this._pending = null;
        this._schedule();
      });
    }
    return this._pending;
  }

  private async _poll(): Promise<void> {
    try {
      const jobs = await this.api.listUserJobs();
      jobs.sort((a, b) => b.id - a.id);
      for (const job of jobs) {
        const before = this._lastStatus.get(job.id);
        // Ended since the last poll: seen running, or new since the first poll (a short job
        // may run and end between two polls).
        const endedSince =
          before === 'submitted' || (before === undefined && this._polled);
        if (endedSince && job.status !== 'submitted') {
          this._jobEnded.emit(job);
        }
        this._lastStatus.set(job.id, job.status);
      }
      this._polled = true;
      this._jobs = jobs;
      this._error = null;
      const running = jobs.some(job => job.status === 'submitted');
      this._interval = running
        ? FAST_INTERVAL_MS
        : Math.min(this._interval * 2, SLOWEST_INTERVAL_MS);
    } catch (error) {
      this._error = error as Error;
      this._interval = Math.min(this._interval * 2, SLOWEST_INTERVAL_MS);
    }
    this._changed.emit();
  }

  private _schedule(): void {
    if (this._stopped) {
      return;
    }
    clearTimeout(this._timer);
    this._timer = setTimeout(() => void this.refresh(), this._interval);
  }

  /** Poll soon and often again (after a submission, or when a view opens a running job). */
  hurry(): void {
    this._interval = FAST_INTERVAL_MS;
    void this.refresh();
  }

  private _jobs: IJob[] = [];
  private _error: Error | null = null;
  private _interval = FAST_INTERVAL_MS;
  private _timer: ReturnType<typeof setTimeout> | undefined = undefined;
  private _stopped = true;
  private _pending: Promise<void> | null = null;
  private _polled = false;
  private _lastStatus = new Map<number, IJob['status']>();
  private _changed = new Signal<this, void>(this);
  private _jobEnded = new Signal<this, IJob>(this);
}
