"""Erasure: rows deleted so that no byte of them is left under the table's folder.

A LanceDB ``delete`` only marks rows deleted: their bytes stay in the fragment's data file,
in every older version (time travel checks them out whole) and in files of failed write
attempts that no version references. ``erase`` goes further, for several tables at once:

1. delete the rows (one commit per table): from then on no read returns them;
2. rewrite every fragment that has a deleted row (its own, and rows superseded by
   upserts), which also remaps the indexes; rebuild those that keep deleted content
   (a full-text index keeps their words);
3. wait ``grace``, then remove every version older than that rewrite, and the files that
   only they reference;
4. remove files that no version references (failed commits) once they are ``grace`` old.

Only fragments with deleted rows are rewritten, so erasing one CV costs one fragment
(at most about ``lance.COMPACT_TARGET_ROWS`` rows once compacted), not the table.

``grace`` is what keeps this safe next to other writers: a write that read a version
needs that version's files until it commits, so a version goes only once its successor
is ``grace`` old, and an unreferenced file only once it is; it must exceed the longest
write transaction. Commit conflicts with other writers are retried.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import pyarrow.fs as pafs

from cvmatch_ray.storage.lance import COMPACT_TARGET_ROWS
from cvmatch_ray.storage.objectstore import filesystem

logger = logging.getLogger(__name__)

#: Fragments with a larger share of deleted rows are rewritten (Lance's default, 0.1,
#: would keep a lone deleted CV in its fragment).
ANY_DELETION = 1e-12
#: How long a write may take, by default (``StoreSettings.erase_grace_s``).
GRACE = timedelta(seconds=10)
#: How long a delete waits for others to share its erasure.
WINDOW_S = 0.05
#: Attempts at one step that another writer's commit keeps preempting.
ATTEMPTS = 10
#: What ``cleanup_old_versions`` is asked for when only unreferenced files are wanted.
_NO_VERSION = timedelta(days=365 * 100)

T = TypeVar("T")
R = TypeVar("R")


class ErasureError(RuntimeError):
    """The rows are deleted (no read returns them) but their bytes may remain: erase again."""


@dataclass(frozen=True)
class Target:
    """One table to erase from: its name (for logs), LanceDB table, and the rows (a SQL
    predicate; ``None`` only finishes earlier erasures)."""


    name: str
    table: Any
    where: str | None
    #: Called with the table after its fragments were rewritten, for the indexes that
    #: keep deleted rows' content: a full-text index's word list does (remapping only
    #: drops their postings), so it is rebuilt.
    reindex: Callable[[Any], None] | None = None


def _conflict(e: BaseException) -> bool:
    return "conflict" in str(e).lower()


def _retrying(what: str, fn: Callable[[], R], sleep: Callable[[float], None]) -> R:
    """``fn()``, again after a short random backoff while a concurrent commit preempts it."""
    for attempt in range(ATTEMPTS):
        try:
            return fn()
        except (OSError, RuntimeError) as e:  # Lance's commit conflicts arrive as OSError
            if not _conflict(e) or attempt == ATTEMPTS - 1:
                raise
            logger.debug("%s: commit conflict, attempt %d", what, attempt + 1)
            sleep(random.uniform(0.01, 0.05) * 2**attempt)
    raise AssertionError("unreachable")


def erase(
    targets: Sequence[Target],
    *,
    grace: timedelta,
    sleep: Callable[[float], None] = time.sleep,
    storage_options: Mapping[str, str] | None = None,
) -> list[int]:
    """Delete the rows of each target and every byte of them under its table's folder.

    ``storage_options`` are the tables' object-store options (``StoreSettings``), with which
    the files no version references are removed.

    Returns:
        Rows deleted per target, in order.

    Raises:
        ErasureError: a step failed (after retries); the rows no longer read back, their
            bytes may remain until the next erasure, which finishes the job.
        ValueError: a predicate is malformed (nothing was changed in that table).
    """
    deleted = []
    for t in targets:
        n = 0
        if t.where is not None:
            n = _retrying(f"{t.name}: delete", lambda t=t: int(t.table.delete(t.where).num_deleted_rows), sleep)
        deleted.append(n)
    try:
        rewritten = [_materialize(t, sleep) for t in targets]
        # A write that read a version from before the rewrite started before this point.
        if grace > timedelta(0):
            sleep(grace.total_seconds())
        for t, version in zip(targets, rewritten, strict=True):
            _drop_versions_before(t, version, grace, sleep, storage_options)
    except (OSError, RuntimeError) as e:
        raise ErasureError(f"erasure incomplete in {', '.join(t.name for t in targets)}: {e}") from e
    logger.info("erased %s rows from %s", deleted, ", ".join(t.name for t in targets))
    return deleted


def _materialize(t: Target, sleep: Callable[[float], None]) -> int:
    """Rewrite the fragments of ``t`` that hold deleted rows (and reindex, if that rewrote
    any); returns a version that has the rewrite."""

    def compact() -> bool:
        metrics = t.table.to_lance().optimize.compact_files(
            target_rows_per_fragment=COMPACT_TARGET_ROWS,
            materialize_deletions=True,
            materialize_deletions_threshold=ANY_DELETION,
        )
        logger.debug("%s: rewrote %d fragments into %d", t.name, metrics.fragments_removed, metrics.fragments_added)
        return metrics.fragments_removed > 0

    if _retrying(f"{t.name}: rewrite", compact, sleep) and t.reindex is not None:
        _retrying(f"{t.name}: reindex", lambda: t.reindex(t.table), sleep)
    return int(t.table.to_lance().version)


def _drop_versions_before(
    t: Target, version: int, grace: timedelta, sleep: Callable[[float], None], storage_options: Mapping[str, str] | None
) -> None:
    """Remove the versions of ``t`` older than ``version``, then unreferenced old files."""
    dataset = t.table.to_lance()
    old = [v["version"] for v in dataset.versions() if v["version"] < version]
    if old:
        stats = _retrying(
            f"{t.name}: cleanup", lambda: dataset.cleanup_old_versions(versions=old, error_if_tagged_old_versions=False),
            sleep,
        )
        logger.debug("%s: removed %d versions, %d data files", t.name, stats.old_versions, stats.data_files_removed)
    _remove_unreferenced(t, grace, storage_options)


def _remove_unreferenced(t: Target, grace: timedelta, storage_options: Mapping[str, str] | None = None) -> int:
    """Remove files that no version references (failed commits) and that are ``grace`` old.

    Lance itself leaves them 7 days, in case a write is still under way; ``grace`` is the
    bound this deployment puts on a write.
    """
    dataset = t.table.to_lance()
    explained = dataset.explain_cleanup_old_versions(
        older_than=_NO_VERSION, delete_unverified=True, include_files=True, max_files=1_000_000,
        error_if_tagged_old_versions=False,
    )
    candidates = [c for c in explained.candidate_files if c.unverified]
    if not candidates:
        return 0
    fs, root = filesystem(dataset.uri, storage_options)
    root = root.rstrip("/")
    # Lance names them by object-store path: a local path without its leading "/", an S3 key
    # without its bucket. What follows the table's folder is the same in both.
    marker = root.rsplit("/", 1)[-1] + "/"
    cutoff = datetime.now(UTC) - grace
    removed = 0
    for c in candidates:
        rel = c.path.rsplit(marker, 1)[-1]
        path = f"{root}/{rel}"
        info = fs.get_file_info(path)
        if info.type != pafs.FileType.File or info.mtime is None or info.mtime >= cutoff:
            continue
        fs.delete_file(path)
        removed += 1
    if removed:
        logger.info("%s: removed %d unreferenced files", t.name, removed)
    return removed


@dataclass
class _Batch(Generic[T, R]):
    items: list[T] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    result: R | None = None
    error: BaseException | None = None


class GroupRunner(Generic[T, R]):
    """Runs ``fn`` once for all the items submitted together (a group commit).

    The first caller waits ``window`` for others, then runs the batch; callers that arrive
    while a batch runs form the next one. Every caller gets the batch's result (or error).
    """

    def __init__(self, fn: Callable[[list[T]], R], *, window: float) -> None:
        self._fn = fn
        self._window = window
        self._lock = threading.Lock()
        self._running = threading.Lock()
        self._open: _Batch[T, R] | None = None

    def submit(self, items: Sequence[T]) -> R:
        """Add ``items`` to the open batch and return that batch's result once it ran."""
        with self._lock:
            batch, leader = self._open, False
            if batch is None:
                batch, leader = _Batch(), True
                self._open = batch
            batch.items.extend(items)
        if not leader:
            batch.done.wait()
        else:
            if self._window > 0:
                time.sleep(self._window)
            with self._running:
                with self._lock:
                    self._open = None
                try:
                    batch.result = self._fn(batch.items)
                except BaseException as e:  # handed to every caller of the batch
                    batch.error = e
                finally:
                    batch.done.set()
        if batch.error is not None:
            raise batch.error
        return batch.result  # type: ignore[return-value]
