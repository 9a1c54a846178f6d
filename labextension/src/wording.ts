/**
 * Plain words for what the runner names in its own terms (issue 19: no runner jargon in the
 * UI), as fractal_jupyter/widgets/wording.py says them: task types become what they do, the
 * job log's fractal-server lines ("SUBMIT 0-th task", "position in Workflow: 0", "The call
 * 0_x/0_par_0000001 ...") get 1-based step numbers and no "calls". Only the view is reworded:
 * the log the server keeps (and the job folder's) keeps its words.
 */

/** What each task type does, in a few words. */
export const TASK_TYPE_WORDS: Record<string, string> = {
  non_parallel: 'runs once, for all images together',
  parallel: 'runs once per image',
  compound: 'prepares once, then runs once per image',
  converter_non_parallel: 'converter: runs once and makes the images',
  converter_compound: 'converter: prepares once, then makes the images one by one'
};

/** The same, short, after a task's name: "task 'Create OME-Zarr' (converter)". */
export const TASK_KINDS: Record<string, string> = {
  non_parallel: 'all images at once',
  parallel: 'per image',
  compound: 'prepared once, then per image',
  converter_non_parallel: 'converter',
  converter_compound: 'converter'
};

export function taskTypeWords(taskType: string | null | undefined): string {
  return TASK_TYPE_WORDS[taskType ?? ''] ?? taskType ?? 'unknown kind';
}

export function taskPhrase(name: string, taskType?: string | null): string {
  const kind = TASK_KINDS[taskType ?? ''];
  return `task '${name}'` + (kind ? ` (${kind})` : '');
}

/** "Step 1: task 'Create OME-Zarr' (converter)" for a workflow task at `order` (0-based). */
export function stepTitle(order: number | null, name: string, taskType?: string | null): string {
  return (order === null ? '' : `Step ${order + 1}: `) + taskPhrase(name, taskType);
}

/** The part of a task whose arguments or resources these are, in words. */
export function partTitle(taskType: string, part: 'non_parallel' | 'parallel'): string {
  if (part === 'parallel') {
    return 'per image';
  }
  return taskType.endsWith('compound') ? 'preparation, once' : 'once, for all images';
}

/** A task's input images in the job by status, in words ("" before it has any). */
export function imagesText(task: {
  images_submitted?: number;
  images_done?: number;
  images_failed?: number;
}): string {
  const done = task.images_done ?? 0;
  const failed = task.images_failed ?? 0;
  const running = task.images_submitted ?? 0;
  const total = done + failed + running;
  if (total === 0) {
    return '';
  }
  const parts = [`${done} done`];
  if (failed) {
    parts.push(`${failed} failed`);
  }
  if (running) {
    parts.push(`${running} running`);
  }
  return `${total} image${total === 1 ? '' : 's'}: ${parts.join(', ')}`;
}

/**
 * The job log as a user reads it: steps counted from 1, tasks named with their kind (from
 * `typesByOrder`, the workflow task types by 0-based position), runs instead of calls.
 */
export function plainLog(
  text: string,
  typesByOrder: Record<number, string | null | undefined> = {}
): string {
  const phrase = (name: string, order: string): string =>
    `${taskPhrase(name, typesByOrder[Number(order)])} at step ${Number(order) + 1}`;
  return text
    .replace(
      /\b(SUBMIT|END) (\d+)-th task \(name="(.*)"\)/g,
      (_m, verb: string, order: string, name: string) =>
        `Step ${Number(order) + 1}: ${taskPhrase(name, typesByOrder[Number(order)])} ` +
        (verb === 'SUBMIT' ? 'started' : 'ended')
    )
    .replace(/Task name: (.*?), position in Workflow: (\d+)/g, (_m, name: string, order: string) =>
      phrase(name, order)
    )
    .replace(
      /Task '([^']*)' \(position (\d+)\)/g,
      (_m, name: string, order: string) => 'T' + phrase(name, order).slice(1)
    )
    .replace(/\bThe call \S+ on image /g, 'The run on image ')
    .replace(/\bThe call \S+ failed/g, 'The run failed')
    .replace(/\b(\d+) calls\b/g, '$1 runs')
    .replace(/\b(per|every|each) call\b/g, '$1 run');
}
