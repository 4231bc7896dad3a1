"""A job's bookkeeping beyond its public state: finished chunks and what was last written."""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from cvmatch_ray.progress.models import JobProgress, JobStatus


def now_dt(ts: float) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(ts, tz=UTC)


class ChunkSet:
    """Finished chunk indices as sorted, disjoint, inclusive ranges.

    Chunks finish roughly in order, so this stays a handful of ranges where a set of ints
    would grow with the job; the ranges are also what gets persisted.
    """

    def __init__(self, ranges: Iterable[Sequence[int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self.count = 0
        for start, end in ranges:
            for i in range(int(start), int(end) + 1):
                self.add(i)

    def __contains__(self, index: int) -> bool:
        k = bisect.bisect_right(self._starts, index) - 1
        return k >= 0 and self._ends[k] >= index

    def add(self, index: int) -> bool:
        """Add ``index``; False if it was already there."""
        if index in self:
            return False
        k = bisect.bisect_right(self._starts, index)
        joins_left = k > 0 and self._ends[k - 1] == index - 1
        joins_right = k < len(self._starts) and self._starts[k] == index + 1
        if joins_left and joins_right:
            self._ends[k - 1] = self._ends[k]
            del self._starts[k]
            del self._ends[k]
        elif joins_left:
            self._ends[k - 1] = index
        elif joins_right:
            self._starts[k] = index
        else:
            self._starts.insert(k, index)
            self._ends.insert(k, index)
        self.count += 1
        return True

    def ranges(self) -> list[list[int]]:
        """The set as ``[[start, end], ...]`` (inclusive), for JSON."""
        return [[s, e] for s, e in zip(self._starts, self._ends, strict=True)]


class JobRecord:
    """A job plus the bookkeeping that is persisted but not part of the public model."""

    __slots__ = ("progress", "chunks", "last_chunk_at", "last_write", "durable", "unwritten")

    def __init__(self, progress: JobProgress, chunks: ChunkSet | None = None, last_chunk_at: float | None = None):
        self.progress = progress
        self.chunks = chunks or ChunkSet()
        # Epoch seconds of the latest counted chunk: the ETA is measured from there.
        self.last_chunk_at = last_chunk_at
        # Clock time of the last write of this job to the table (0 = never written).
        self.last_write = 0.0
        # The state as last written to the table (what a restarted actor would reload):
        # readers see this, so nothing they were shown can be lost with the actor.
        self.durable: JobProgress | None = None
        # What readers see of a job created without a write, until its first write: the
        # job as created (the live state could be shown and then taken back by a write
        # of an earlier one).
        self.unwritten: JobProgress | None = None

    def start(self, now: float) -> None:
        """Mark the job running from ``now``."""
        self.progress.status = JobStatus.running
        self.progress.started_at = now_dt(now)
        self.touch(now)

    def touch(self, now: float) -> None:
        self.progress.updated_at = now_dt(now)

    def update_rate(self, now: float) -> None:
        """Elapsed time, seconds per chunk and ETA after a finished chunk."""
        p = self.progress
        self.touch(now)
        if p.started_at is None or self.chunks.count == 0:
            return
        elapsed = max(0.0, now - p.started_at.timestamp())
        p.total_seconds = elapsed
        p.seconds_per_chunk = elapsed / self.chunks.count
        if p.total_chunks:
            p.eta_seconds = p.seconds_per_chunk * max(0, p.total_chunks - self.chunks.count)
        elif p.total and p.processed:
            p.eta_seconds = elapsed / p.processed * max(0, p.total - p.processed)

    def chunked_percent(self) -> float:
        p = self.progress
        if p.total:
            return 100.0 * p.processed / p.total
        if p.total_chunks:
            return 100.0 * p.current_chunk / p.total_chunks
        return 0.0

    def raise_percent(self, value: float | None) -> None:
        """Move the bar forward to ``value``; it never goes back."""
        if value is not None:
            self.progress.percent = round(min(100.0, max(self.progress.percent, value)), 2)

    def to_row(self) -> dict[str, Any]:
        """The ``jobs`` table row: filterable columns plus the whole state as JSON."""
        p = self.progress
        state = {
            "v": 1,
            "progress": p.model_dump(mode="json"),
            "done_chunks": self.chunks.ranges(),
            "last_chunk_at": self.last_chunk_at,
        }
        return {
            "job_id": p.job_id,
            "kind": p.kind,
            "jd_id": p.jd_id,
            "status": p.status.value,
            "updated_at": p.updated_at,
            "state_json": json.dumps(state),
        }

    @classmethod
    def from_json(cls, text: str) -> JobRecord:
        data = json.loads(text)
        record = cls(
            JobProgress.model_validate(data["progress"]),
            ChunkSet(data.get("done_chunks", ())),
            data.get("last_chunk_at"),
        )
        record.durable = record.progress.model_copy(update={"failures": list(record.progress.failures)})
        return record


