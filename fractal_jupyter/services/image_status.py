"""Each image's latest status per workflow task, and its per-dataset summary.

`image_status_summary` counts the rows of `image_status` by (dataset, workflow task, status);
every change of `image_status` goes through here (or deletes images through `forget`), so that
the counts stay exact, as `attribute_summary` does for attributes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import cast

from sqlalchemy import Table, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.bulk import IDS_PER_STATEMENT, chunks, dialect_insert
from ..db.models import ImageStatus, ImageStatusSummary

# Bulk statements go to the table, not the mapped class: no ORM bookkeeping per row.
_IMAGE_STATUS = cast(Table, ImageStatus.__table__)
# (dataset id, workflow task id, status) -> change of its image count
Deltas = Counter[tuple[int, int, str]]


async def change_summary(session: AsyncSession, deltas: Deltas) -> None:
    rows = [
        {"dataset_id": d, "workflowtask_id": w, "status": s, "image_count": n}
        for (d, w, s), n in sorted(deltas.items())
        if n != 0
    ]
    if not rows:
        return
    statement = dialect_insert(session)(ImageStatusSummary).values(rows)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["dataset_id", "workflowtask_id", "status"],
            set_={"image_count": ImageStatusSummary.image_count + statement.excluded.image_count},
        )
    )
    if any(n < 0 for n in deltas.values()):
        await session.execute(delete(ImageStatusSummary).where(ImageStatusSummary.image_count <= 0))


async def set_statuses(
    session: AsyncSession,
    dataset_id: int,
    workflow_task_id: int,
    rows: Mapping[int, tuple[str, int]],
) -> None:
    """Give images (by id) a status and its unit for the workflow task: {id: (status, unit)}."""
    if not rows:
        return
    ids = sorted(rows)  # concurrent writers lock rows in one order
    old: dict[int, str] = {}
    connection = await session.connection()
    for chunk in chunks(ids, IDS_PER_STATEMENT):
        found = await connection.execute(
            select(ImageStatus.image_id, ImageStatus.status).where(
                ImageStatus.workflowtask_id == workflow_task_id, ImageStatus.image_id.in_(chunk)
            )
        )
        old.update((image_id, status) for image_id, status in found)
    deltas: Deltas = Counter()
    for image_id, (status, _unit) in rows.items():
        previous = old.get(image_id)
        if previous != status:
            deltas[(dataset_id, workflow_task_id, status)] += 1
            if previous is not None:
                deltas[(dataset_id, workflow_task_id, previous)] -= 1
    upsert = dialect_insert(session)(_IMAGE_STATUS)
    statement = upsert.on_conflict_do_update(
        index_elements=["image_id", "workflowtask_id"],
        set_={
            "status": upsert.excluded.status,
            "latest_history_unit_id": upsert.excluded.latest_history_unit_id,
        },
    )
    values = [
        {
            "image_id": image_id,
            "workflowtask_id": workflow_task_id,
            "dataset_id": dataset_id,
            "status": rows[image_id][0],
            "latest_history_unit_id": rows[image_id][1],
        }
        for image_id in ids
    ]
    for values_chunk in chunks(values, IDS_PER_STATEMENT):
        await connection.execute(statement, list(values_chunk))
    await change_summary(session, deltas)


async def forget(session: AsyncSession, image_ids: Sequence[int]) -> None:
    """Take images about to be deleted out of the summary (their rows go by cascade)."""
    deltas: Deltas = Counter()
    for chunk in chunks(image_ids, IDS_PER_STATEMENT):
        found = await session.execute(
            select(
                ImageStatus.dataset_id,
                ImageStatus.workflowtask_id,
                ImageStatus.status,
                func.count(),
            )
            .where(ImageStatus.image_id.in_(chunk))
            .group_by(ImageStatus.dataset_id, ImageStatus.workflowtask_id, ImageStatus.status)
        )
        for dataset_id, workflow_task_id, status, count in found:
            deltas[(dataset_id, workflow_task_id, status)] -= count
    await change_summary(session, deltas)
