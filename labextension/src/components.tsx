import * as React from 'react';

import { JobStatus, TaskStatus } from './api';

const LABELS: Record<JobStatus | TaskStatus, string> = {
  submitted: 'running',
  done: 'done',
  failed: 'failed',
  pending: 'pending'
};

/** A job's (or a task's) status as a coloured badge: running, done, failed, pending. */
export function StatusBadge(props: {
  status: JobStatus | TaskStatus;
}): JSX.Element {
  return (
    <span
      className={`fractal-badge fractal-badge-${props.status}`}
      data-status={props.status}
    >
      {LABELS[props.status]}
    </span>
  );
}

/** An error of the API, with its detail, where the data would be. */
export function ErrorLine(props: { error: Error | null }): JSX.Element | null {
  if (!props.error) {
    return null;
  }
  return <div className="fractal-error">{props.error.message}</div>;
}

export function formatTime(timestamp: string | null): string {
  return timestamp ? new Date(timestamp).toLocaleString() : '';
}
