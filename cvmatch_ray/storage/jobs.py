"""The durable copy of the progress book: the ``jobs`` LanceDB table, one row per job."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import pyarrow as pa

from cvmatch_ray.storage import erasure, lance


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class JobTable:
    """The ``jobs`` LanceDB table: one row per job, upserted by ``job_id``.

    Columns other than ``state_json`` are there to filter on without parsing JSON.
    """

    NAME = "jobs"
    SCHEMA = pa.schema(
        [
            pa.field("job_id", pa.string(), nullable=False),
            pa.field("kind", pa.string()),
            pa.field("jd_id", pa.string()),
            pa.field("status", pa.string()),
            pa.field("updated_at", pa.timestamp("us", tz="UTC")),
            pa.field("state_json", pa.string()),
        ]
    )

    def __init__(
        self,
        uri: str,
        *,
        compact_every: int | None = lance.COMPACT_EVERY,
        erase_grace: timedelta = erasure.GRACE,
        storage_options: Mapping[str, str] | None = None,
    ) -> None:
        """Open (or create) the table.

        Args:
            uri: LanceDB database URI (a folder, or ``s3://...``); made absolute if local.
            storage_options: the object store's options (``StoreSettings.storage_options``).
            compact_every: writes between two compactions (``storage.lance``'s policy);
                the book runs a due compaction with ``optimize_if_due``.
            erase_grace: how long a write may take; ``erase_deleted`` waits this long.
        """
        self.uri = lance.resolve_data_dir(uri)
        self._storage_options = dict(storage_options or {})
        self._db = lance.connect(self.uri, storage_options=self._storage_options)
        self._table = self._db.create_table(self.NAME, schema=self.SCHEMA, exist_ok=True)
        self._commits = lance.CommitCounter(compact_every)
        self._compaction_due = False
        self._erase_grace = erase_grace

    def upsert(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert or replace ``rows`` (from ``JobRecord.to_row``) in one merge."""
        if not rows:
            return
        lance.upsert(self._table, "job_id", pa.Table.from_pylist(rows, schema=self.SCHEMA))
        self._committed()

    def _committed(self) -> None:
        if self._commits.committed(self.NAME):
            self._compaction_due = True

    def optimize_if_due(self) -> bool:
        """Compact the table when enough writes have piled up; True if it did."""
        if not self._compaction_due:
            return False
        self._compaction_due = False
        return lance.compact(self.NAME, self._table)

    def load_all(self) -> list[str]:
        """The state JSON of every stored job."""
        return self._table.to_arrow().column("state_json").to_pylist()

    def find(self, job_id: str) -> str | None:
        """The state JSON of the stored job ``job_id``, or None."""
        rows = self._query(f"job_id = {_sql_str(job_id)}")
        return rows[0] if rows else None

    def find_by_jd(self, jd_id: str) -> list[str]:
        """The state JSON of the stored jobs of one JD."""
        return self._query(f"jd_id = {_sql_str(jd_id)}")

    def delete(self, job_ids: Sequence[str]) -> int:
        """Remove the rows of ``job_ids`` in one commit; returns how many there were.

        Their bytes stay on disk until ``erase_deleted``.
        """
        if not job_ids:
            return 0
        result = self._table.delete(f"job_id IN ({', '.join(_sql_str(i) for i in job_ids)})")
        self._committed()
        return result.num_deleted_rows

    def erase_deleted(self) -> None:
        """Remove every byte of the deleted rows from disk (``storage.erasure``).

        Separate from ``delete`` so that writes need not wait for it (it takes at least
        ``erase_grace``); other writers may go on meanwhile.

        Raises:
            erasure.ErasureError: bytes may remain; the next call removes them.
        """
        erasure.erase(
            [erasure.Target(self.NAME, self._table, None)], grace=self._erase_grace, storage_options=self._storage_options
        )

    def _query(self, where: str) -> list[str]:
        table = self._table.search().where(where).select(["state_json"]).to_arrow()
        return table.column("state_json").to_pylist()

