"""A dataset import, read from its JSON body and written a chunk of images at a time.

100,000 images are about 15 MB of JSON but several hundred MB as pydantic models, which the
allocator keeps after the request. So the body is walked with the standard library's JSON
scanner (C): the top-level members other than `images` are decoded whole and validated as
`DatasetImport` is; the images are decoded, validated (`SingleImage`), checked and written
`IMPORT_CHUNK_IMAGES` at a time, all in the request's one transaction.

The answers are those of validating the whole body first: its validation errors, else the
first image outside `zarr_dir`, else the first duplicate zarr_url; nothing is stored then.
A body with validation errors, or one the walker might read differently from pydantic's JSON
parser (invalid JSON, a top-level key given twice, an escaped surrogate), is validated whole,
as before, so that its `detail` is exactly pydantic's; only such bodies cost the memory of
the whole list.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Dataset
from ..errors import FractalError, Unprocessable, validation_detail
from ..gc_pause import garbage_collection_paused
from ..schemas.dataset import DatasetImport
from ..schemas.images import SingleImage, plain_images
from .access import get_project_for_member
from .dataset import new_dataset
from .images import ImageRow, ImageWriter, check_image_location, image_row
from .users import CurrentUser

# Images decoded, validated and written at a time; tests make it small.
IMPORT_CHUNK_IMAGES = 5_000

_IMAGES = TypeAdapter(list[SingleImage])
_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# The end of an array item: a comma or the closing bracket, and the blanks around it.
_ITEM_END = re.compile(r"[ \t\n\r]*([,\]])[ \t\n\r]*")
# Python's scanner accepts an escaped lone surrogate, pydantic's refuses it; this finds every
# surrogate escape (and some look-alikes), which sends the body to whole-body validation.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _WholeBody(Exception):
    """A body to validate whole, as before: it has validation errors (whose `detail` is then
    pydantic's, in its order), or the walker might read it differently from pydantic."""


class _Reader:
    """Walks a JSON object member by member; `members` waits for each value to be read."""

    def __init__(self, raw: bytes) -> None:
        try:
            self.text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _WholeBody from None
        if _SURROGATE_ESCAPE.search(self.text):
            raise _WholeBody
        self.pos = 0

    def _skip_blanks(self) -> None:
        match = _WHITESPACE.match(self.text, self.pos)
        assert match is not None  # it matches the empty string
        self.pos = match.end()

    def _take(self, expected: str) -> str:
        self._skip_blanks()
        char = self.text[self.pos : self.pos + 1]
        if not char or char not in expected:  # "" is "in" every string
            raise _WholeBody
        self.pos += 1
        return char

    def value(self) -> Any:
        self._skip_blanks()
        try:
            value, self.pos = _DECODER.raw_decode(self.text, self.pos)
        except (ValueError, RecursionError):
            raise _WholeBody from None
        return value

    def at_array(self) -> bool:
        self._skip_blanks()
        return self.text.startswith("[", self.pos)

    def members(self) -> Iterator[str]:
        """The keys of the top-level object; the caller reads each value before the next."""
        self._take("{")
        self._skip_blanks()
        if self.text.startswith("}", self.pos):
            self.pos += 1
        else:
            while True:
                self._skip_blanks()
                if not self.text.startswith('"', self.pos):
                    raise _WholeBody
                key = self.value()
                self._take(":")
                yield key
                if self._take(",}") == "}":
                    break
        self._skip_blanks()
        if self.pos != len(self.text):
            raise _WholeBody

    def items(self) -> Iterator[Any]:
        """The values of the array that starts here."""
        self._take("[")
        self._skip_blanks()
        if self.text.startswith("]", self.pos):
            self.pos += 1
            return
        # One regular expression per item for what follows it: this loop runs 100,000
        # times for 100,000 images, and method calls per token were a tenth of an import.
        text, decode, item_end = self.text, _DECODER.raw_decode, _ITEM_END.match
        while True:
            try:
                value, end = decode(text, self.pos)
            except (ValueError, RecursionError):
                raise _WholeBody from None
            found = item_end(text, end)
            if found is None:
                raise _WholeBody
            self.pos = found.end()
            yield value
            if found.group(1) == "]":
                return


def _next_images(items: Iterator[Any]) -> list[ImageRow]:
    """The next `IMPORT_CHUNK_IMAGES` images of the array (fewer at its end), validated."""
    chunk = list(itertools.islice(items, IMPORT_CHUNK_IMAGES))
    plain = plain_images(chunk)
    if plain is not None:
        return plain
    try:
        return list(map(image_row, _IMAGES.validate_python(chunk)))
    except ValidationError:
        raise _WholeBody from None


def _validate_whole(raw: bytes) -> DatasetImport:
    try:
        return DatasetImport.model_validate_json(raw)
    except ValidationError as error:
        raise Unprocessable(validation_detail(error, "body")) from None


def _valid_head(head: dict[str, Any]) -> DatasetImport | None:
    """The top-level members but the images array, as `DatasetImport`, if they are valid."""
    try:
        return DatasetImport.model_validate(head)
    except ValidationError:
        return None


class _ImageStream:
    """The images in order: validated, checked and, while all is well, written."""

    def __init__(self, zarr_dir: str | None, writer: ImageWriter | None) -> None:
        # Without a writer (the head is not known yet), images are only validated.
        self.zarr_dir = zarr_dir
        self.writer = writer
        self.location_error: str | None = None
        self.duplicate: str | None = None

    async def feed(self, items: Iterator[Any]) -> bool:
        """Take the next chunk of `items`; False once there were none left.

        The chunk is decoded and validated in a worker thread (other requests are answered
        meanwhile), but not while the previous one is written: overlapped, the writes' many
        short waits for the GIL (one per row SQLite inserts) made the import slower."""
        images = await asyncio.to_thread(_next_images, items)
        if not images:
            return False
        await self.accept(images)
        return True

    async def accept(self, images: list[ImageRow]) -> None:
        if self.writer is None or self.zarr_dir is None:
            return
        # After a problem nothing more is written, but the remaining images are still
        # validated (validation errors win) and located (a location error beats a duplicate).
        if self.location_error is not None:
            return
        for image in images:
            try:
                check_image_location(image["zarr_url"], self.zarr_dir)
            except Unprocessable as error:
                self.location_error = f"Cannot import dataset: {error.detail}"
                return
        if self.duplicate is None:
            self.duplicate = self.writer.first_duplicate(images)
            if self.duplicate is None:
                await self.writer.write(images)

    def raise_problem(self) -> None:
        if self.location_error is not None:
            raise Unprocessable(self.location_error)
        if self.duplicate is not None:
            raise Unprocessable(f"Image with zarr_url '{self.duplicate}' appears twice")


async def _walk(
    session: AsyncSession | None, project_id: int, raw: bytes, known: DatasetImport | None
) -> Dataset | None:
    """Import the body (or, without a session, only validate it)."""
    reader = _Reader(raw)
    head: dict[str, Any] = {}
    stream: _ImageStream | None = None
    dataset: Dataset | None = None
    try:
        for key in reader.members():
            if key in head or (key == "images" and stream is not None):
                raise _WholeBody  # pydantic keeps the last value of a key given twice
            if key != "images" or not reader.at_array():
                head[key] = reader.value()
                continue
            start = known if known is not None else _valid_head(head)
            writer = None
            if start is not None and session is not None:
                dataset = await new_dataset(session, project_id, start)
                writer = ImageWriter(session, dataset.id)
            stream = _ImageStream(start.zarr_dir if start else None, writer)
            items = reader.items()
            while await stream.feed(items):
                pass
        data = _valid_head(head)
        if data is None:
            raise _WholeBody
    except _WholeBody:
        if session is not None and dataset is not None:
            # The whole-body path starts afresh (no SAVEPOINT: it slows SQLite's inserts).
            await session.delete(dataset)
            await session.flush()
        raise
    if session is None:
        return None
    if stream is not None:
        if stream.writer is None:
            # The images came before the rest of the head: now it is known, read them again.
            return await _walk(session, project_id, raw, data)
        stream.raise_problem()
        await stream.writer.finish()
    if dataset is None:
        dataset = await new_dataset(session, project_id, data)
    else:
        dataset.filters = data.filters.model_dump()
        await session.flush()
    return dataset


async def _import_whole(session: AsyncSession, project_id: int, raw: bytes) -> Dataset:
    data = await asyncio.to_thread(_validate_whole, raw)
    dataset = await new_dataset(session, project_id, data)
    writer = ImageWriter(session, dataset.id)
    stream = _ImageStream(data.zarr_dir, writer)
    for start in range(0, len(data.images), IMPORT_CHUNK_IMAGES):
        await stream.accept(list(map(image_row, data.images[start : start + IMPORT_CHUNK_IMAGES])))
    stream.raise_problem()
    await writer.finish()
    return dataset


async def _raise_validation_errors(raw: bytes) -> None:
    """The body's validation errors as a 422, if it has any."""
    try:
        await _walk(None, 0, raw, None)
    except _WholeBody:
        await asyncio.to_thread(_validate_whole, raw)


async def import_dataset(
    session: AsyncSession, user: CurrentUser, project_id: int, raw: bytes
) -> Dataset:
    """A new dataset with its images from a `DatasetImport` JSON body.

    Every image must lie inside `zarr_dir`, once. A body with validation errors gets them as
    a 422 even from a caller who may not use the project, as when the body was validated first.
    """
    try:
        await get_project_for_member(session, project_id, user)
    except FractalError:
        await _raise_validation_errors(raw)
        raise
    with garbage_collection_paused():
        try:
            dataset = await _walk(session, project_id, raw, None)
        except _WholeBody:
            dataset = await _import_whole(session, project_id, raw)
    if dataset is None:
        raise RuntimeError("an import with a session always makes a dataset")
    await session.refresh(dataset, ["project"])
    return dataset
