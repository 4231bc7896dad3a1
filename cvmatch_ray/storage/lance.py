"""What every LanceDB table here shares: connecting, idempotent upserts, one compaction policy.

Every commit adds a fragment (a file) and a version. A table that many small writes built
(uploads one batch at a time, a match job one chunk at a time, progress reports) is slow
to read and to upsert into, since each does work per fragment. So each writer compacts a
table after every ``COMPACT_EVERY`` of its own commits to it (LanceDB's advice is about
20): small fragments are merged into ones of up to ``COMPACT_TARGET_ROWS`` rows, so a
compaction rewrites at most about that many rows however large the table grows; indexes
take in the rows written since; versions older than ``KEEP_VERSIONS_FOR`` are removed.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta
from typing import Any

import pyarrow as pa

from cvmatch_ray.storage.objectstore import lance_options

logger = logging.getLogger(__name__)

#: Commits to one table through one writer between two compactions of it.
COMPACT_EVERY = 20
#: Compaction merges fragments smaller than this into fragments of about this many rows.
COMPACT_TARGET_ROWS = 8192
#: Versions are kept this long after they are superseded (a reader never needs one: reads
#: see the latest version), then their files are removed by the next compaction.
KEEP_VERSIONS_FOR = timedelta(hours=1)


def resolve_data_dir(uri: str) -> str:
    """Make a local LanceDB path absolute; object-store URIs (``s3://``...) pass through.

    A Ray actor or task may run with another working directory than the caller, so a relative
    ``./cvmatch_data`` must be pinned to the caller's meaning before it travels.
    """
    if "://" in uri:
        return uri
    return os.path.abspath(os.path.expanduser(uri))


def connect(
    uri: str,
    *,
    read_consistency_interval: timedelta | None = None,
    storage_options: dict[str, str] | None = None,
) -> Any:
    """A LanceDB connection to the database at ``uri`` (a folder, ``s3://``, ``gs://``, ``az://``).

    ``storage_options`` (``StoreSettings.storage_options``) apply to object stores only
    (``objectstore.lance_options``).

    lancedb is imported here, not at module import: it starts a runtime that warns when a
    process forks afterwards, and processes that only hold a progress client never need it.
    """
    import lancedb

    return lancedb.connect(
        uri, read_consistency_interval=read_consistency_interval, storage_options=lance_options(uri, storage_options)
    )


def upsert(table: Any, key: str, data: pa.Table, *, update: bool = True) -> Any:
    """Merge ``data`` into ``table`` on the column ``key`` in one commit (idempotent).

    Rows whose key is stored are replaced (kept as they are when ``update`` is False),
    the others inserted. Returns LanceDB's merge result (rows inserted, updated, attempts).
    """
    builder = table.merge_insert(key)
    if update:
        builder = builder.when_matched_update_all()
    return builder.when_not_matched_insert_all().execute(data)


def compact(name: str, table: Any) -> bool:
    """Merge small fragments, index the rows written since, prune old versions.

    Best effort: a compaction that loses a race with another process's commit, or fails
    otherwise, leaves the table as it was and is tried again later. Returns whether it ran.
    """
    try:
        dataset = table.to_lance()
        metrics = dataset.optimize.compact_files(target_rows_per_fragment=COMPACT_TARGET_ROWS)
        dataset.optimize.optimize_indices()
        dataset.cleanup_old_versions(older_than=KEEP_VERSIONS_FOR)
    except (OSError, RuntimeError, ValueError) as e:  # Lance maps its failures onto these
        # Usually another writer's commit won the race; harmless, and tried again later.
        logger.info("%s: compaction skipped: %s", name, e)
        return False
    logger.debug("%s: compacted %d fragments into %d", name, metrics.fragments_removed, metrics.fragments_added)
    return True


class CommitCounter:
    """Counts one writer's commits per table and says when a table is due for ``compact``."""

    def __init__(self, every: int | None = COMPACT_EVERY) -> None:
        """Args:
            every: commits to one table between two compactions; ``None``: never due.
        """
        if every is not None and every <= 0:
            raise ValueError(f"compaction interval must be positive, got {every}")
        self.every = every
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def committed(self, name: str) -> bool:
        """Count a commit to ``name``; True when this one makes a compaction due (the count restarts)."""
        if self.every is None:
            return False
        with self._lock:
            count = self._counts.get(name, 0) + 1
            due = count >= self.every
            self._counts[name] = 0 if due else count
        return due
