"""fractal-server 2.6.4's batching heuristic, on the worked examples of its reference."""

import pytest

from fractal_jupyter.runner.batching import (
    BatchingError,
    BatchingLimits,
    heuristics,
    parse_mem,
    split,
)

SMALL = BatchingLimits(8, 16, 32000, 62000, 100, 200)
BIG = BatchingLimits(48, 96, 62000, 125000, 5, 10)


@pytest.mark.parametrize(
    "limits, cpus, mem, units, expected",
    [
        (SMALL, 1, 4000, 10, (8, 8)),
        (SMALL, 1, 4000, 400, (8, 8)),
        (SMALL, 4, 16000, 96, (2, 2)),
        (SMALL, 4, 16000, 400, (3, 3)),
        (SMALL, 16, 61000, 96, (1, 1)),
        (SMALL, 16, 61000, 400, (2, 1)),
        (BIG, 1, 4000, 10, (15, 15)),
        (BIG, 1, 4000, 96, (31, 31)),
        (BIG, 1, 4000, 400, (40, 31)),
        (BIG, 4, 16000, 96, (10, 7)),
        (BIG, 4, 16000, 400, (40, 7)),
        (BatchingLimits(1, 1, 200, 500, 2, 4), 1, 100, 10, (3, 1)),
    ],
)
def test_heuristic_examples(limits, cpus, mem, units, expected):
    assert heuristics(units, limits, cpus, mem) == expected


def test_user_values_are_checked_and_clamped():
    assert heuristics(10, SMALL, 1, 1000, tasks_per_job=4, parallel_tasks_per_job=9) == (4, 4)
    with pytest.raises(BatchingError, match="given together"):
        heuristics(10, SMALL, 1, 1000, tasks_per_job=4)
    with pytest.raises(BatchingError, match="exceed max_cpus_per_job=16"):
        heuristics(10, SMALL, 4, 1000, tasks_per_job=8, parallel_tasks_per_job=8)
    with pytest.raises(BatchingError, match="more than max_num_jobs=200"):
        heuristics(1000, SMALL, 1, 1000, tasks_per_job=1, parallel_tasks_per_job=1)
    with pytest.raises(BatchingError, match="more than max_cpus_per_job"):
        heuristics(10, SMALL, 17, 1000)
    with pytest.raises(BatchingError, match="more than max_mem_per_job"):
        heuristics(10, SMALL, 1, 70000)


def test_memory_values_and_limits_from_settings():
    assert [parse_mem(value) for value in (500, "500", "2G", "3M", "1T")] == [
        500,
        500,
        2000,
        3,
        1_000_000,
    ]
    for bad in ("2GB", "-1", True, "lots"):
        with pytest.raises(BatchingError):
            parse_mem(bad)
    limits = BatchingLimits.from_dict({"target_mem_per_job": "4G", "max_num_jobs": 3})
    assert limits.target_mem_per_job == 4000 and limits.max_num_jobs == 3
    assert limits.target_cpus_per_job == 8  # the others keep their defaults
    with pytest.raises(BatchingError, match="unknown"):
        BatchingLimits.from_dict({"max_jobs": 3})
    assert split(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
