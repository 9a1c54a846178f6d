import {
  imagesText,
  partTitle,
  plainLog,
  stepTitle,
  taskPhrase,
  taskTypeWords
} from '../src/wording';

describe('Plain words instead of runner terms', () => {
  it('names tasks by what they do, steps from 1', () => {
    expect(taskPhrase('Create OME-Zarr', 'converter_non_parallel')).toBe(
      "task 'Create OME-Zarr' (converter)"
    );
    expect(stepTitle(0, 'Project', 'compound')).toBe(
      "Step 1: task 'Project' (prepared once, then per image)"
    );
    expect(stepTitle(null, 'workflow task 9')).toBe("task 'workflow task 9'");
    expect(taskTypeWords('parallel')).toBe('runs once per image');
    expect(taskTypeWords('magic')).toBe('magic');
    expect(partTitle('converter_compound', 'non_parallel')).toBe('preparation, once');
    expect(partTitle('non_parallel', 'non_parallel')).toBe('once, for all images');
    expect(partTitle('parallel', 'parallel')).toBe('per image');
  });

  it('counts images, not calls', () => {
    expect(imagesText({ images_done: 1, images_failed: 1 })).toBe('2 images: 1 done, 1 failed');
    expect(imagesText({ images_submitted: 1, images_done: 0 })).toBe('1 image: 0 done, 1 running');
    expect(imagesText({})).toBe('');
  });

  it('rewords the log the job monitor shows', () => {
    const types = { 0: 'converter_non_parallel', 1: 'compound', 2: 'parallel' };
    const log = [
      '2026-12-04 10:00:00,001 - INFO - SUBMIT 0-th task (name="Create OME-Zarr")',
      '2026-12-04 10:00:01,001 - INFO - END 0-th task (name="Create OME-Zarr")',
      '2026-12-04 10:00:01,003 - INFO - Project: 12 calls in 2 SLURM jobs',
      '2026-12-04 10:00:01,004 - INFO - Project: warm start, a process forked per call',
      '2026-12-04 10:00:02,003 - ERROR - TASK ERROR: Task name: Project, position in Workflow: 1',
      'The call 1_project/1_par_0000003 on image /z/p.zarr/B/03/0 failed: exit code 3',
      "2026-12-04 10:00:02,004 - ERROR - Task 'Measure' (position 2) returned an invalid output",
      'The call 0_init/0_non_par failed: exit code 1'
    ].join('\n');
    expect(plainLog(log, types).split('\n')).toEqual([
      "2026-12-04 10:00:00,001 - INFO - Step 1: task 'Create OME-Zarr' (converter) started",
      "2026-12-04 10:00:01,001 - INFO - Step 1: task 'Create OME-Zarr' (converter) ended",
      '2026-12-04 10:00:01,003 - INFO - Project: 12 runs in 2 SLURM jobs',
      '2026-12-04 10:00:01,004 - INFO - Project: warm start, a process forked per run',
      "2026-12-04 10:00:02,003 - ERROR - TASK ERROR: task 'Project' (prepared once, then per " +
        'image) at step 2',
      'The run on image /z/p.zarr/B/03/0 failed: exit code 3',
      "2026-12-04 10:00:02,004 - ERROR - Task 'Measure' (per image) at step 3 returned an " +
        'invalid output',
      'The run failed: exit code 1'
    ]);
    expect(plainLog('SUBMIT 4-th task (name="X")')).toBe("Step 5: task 'X' started");
  });
});
