"""The CV pool held in memory for whole-pool retrieval (``PoolArrays``), and its loading.

Whole-pool matching (``match.retrieve``, ``match.shortlist``) looks at every stored CV for
each JD, so what it reads of a CV is held in memory, compactly, once per table version:

- the two searched vectors (title, summed sections) as int8 codes with error bounds
  (``match.quantized``), twice: as numpy rows (read a few at a time) and in the int8
  kernel's packed layout (scanned whole): 2 x 2 x 384 bytes at 384 dimensions, against
  2 x 1,536 as float32; the exact float32 rows of the few CVs that need them are read by
  position;
- a 32-dimension float32 sketch of each (``quantized.Sketch``, 2 x 128 bytes), for the
  approximate shortlist;
- years and education as small integers, skills and occupations as integer codes;
- the list columns the prescore of a few CVs needs (skills, occupations, roles), as Arrow.

``PoolArrays.nbytes`` says what that costs (2.2 KB per synthetic CV; the pool this
replaced held ~3.3 KB); ``docs/performance.md`` has the figures.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cvmatch_ray.match.features import FEATURE_COLUMNS, ROLE_COLUMNS, CodedLists
from cvmatch_ray.match.quantized import SKETCH_DIMS, Int8Rows, Sketch
from cvmatch_ray.storage.records import SEARCH_VECTOR_COLUMNS, vector_matrix

#: The list columns kept as Arrow: what ``scoring.prescore`` reads of a CV besides numbers.
LIST_COLUMNS: tuple[str, ...] = ("skills", "norm_titles", *ROLE_COLUMNS)
#: The columns a pool is loaded from.
POOL_COLUMNS: tuple[str, ...] = ("cv_id", *SEARCH_VECTOR_COLUMNS, "experience_months", "education_rank",
                                 *LIST_COLUMNS)
#: Rows read and quantized at a time: the float32 vectors of one batch (2 x 1.5 KB per CV)
#: are the load's peak beyond the pool itself.
LOAD_BATCH_ROWS = 65536
#: CVs the sketch's principal directions are fitted on (an SVD of this many rows).
SKETCH_SAMPLE_ROWS = 8192


@dataclass
class PoolArrays:
    """What whole-pool retrieval reads of every CV, as arrays in one row order.

    ``Store.pool_arrays`` builds it; ``version`` is the CV table version it was read at,
    and ``dataset`` that version, pinned, so rows are read back by position.
    """

    version: int
    cv_ids: np.ndarray  # [n] bytes (ids are ASCII hex): 32 bytes each, no Python objects
    vectors: dict[str, Int8Rows]  # SEARCH_VECTOR_COLUMNS -> int8 rows
    sketches: dict[str, Sketch]  # SEARCH_VECTOR_COLUMNS -> a few dimensions of them (approximate)
    experience_months: np.ndarray  # [n] int32
    education_rank: np.ndarray  # [n] int8
    skills: CodedLists  # canonical skills per CV
    norm_titles: CodedLists  # taxonomy occupations per CV
    lists: pa.Table  # LIST_COLUMNS, for the prescore of a few rows
    has_roles: np.ndarray  # [n] bool: the CV lists experience roles
    dim: int = 0
    dataset: Any = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.cv_ids)

    @property
    def nbytes(self) -> int:
        """Bytes the pool holds (arrays, codes, Arrow lists; the inverted indexes estimated
        from their arrays)."""
        coded = sum(c._rows.nbytes + c._starts.nbytes for c in (self.skills, self.norm_titles))  # noqa: SLF001
        return (self.cv_ids.nbytes + sum(v.nbytes for v in self.vectors.values())
                + sum(s.nbytes for s in self.sketches.values()) + self.experience_months.nbytes
                + self.education_rank.nbytes + self.has_roles.nbytes + self.lists.nbytes + coded)

    def ids(self, positions: np.ndarray) -> list[str]:
        """The cv_ids at these row positions, as str."""
        return [b.decode("ascii") for b in self.cv_ids[np.asarray(positions, dtype=np.int64)].tolist()]

    def _take(self, positions: np.ndarray, columns: list[str]) -> pa.Table:
        if self.dataset is None or not len(positions):
            raise ValueError("no rows to read")
        return self.dataset.take(np.asarray(positions, dtype=np.int64).tolist(), columns=columns)

    def features(self, positions: np.ndarray) -> pa.Table:
        """The scoring columns (``FEATURE_COLUMNS``) of the CVs at these row positions.

        What the pool holds (ids, years, education, skills, occupations, roles) comes from
        memory; the rest is read from the dataset version these arrays came from, by
        position. A read by position costs per row and column (100 rows of all 17 columns:
        ~50 ms at a million CVs here), so this reads 8 columns instead of 17.
        """
        rows = np.asarray(positions, dtype=np.int64)
        held = self.signals(rows)
        held = held.append_column("cv_id", pa.array(self.ids(rows), pa.string()))
        read = self._take(rows, [c for c in FEATURE_COLUMNS if c not in held.column_names])
        columns = {**{c: held.column(c) for c in held.column_names}, **{c: read.column(c) for c in read.column_names}}
        return pa.table({c: columns[c] for c in FEATURE_COLUMNS})

    def float_vectors(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """The exact float32 rows of the searched vector columns at these positions (read)."""
        table = self._take(positions, list(SEARCH_VECTOR_COLUMNS))
        return {c: vector_matrix(table.column(c)) for c in SEARCH_VECTOR_COLUMNS}

    def signals(self, positions: np.ndarray) -> pa.Table:
        """The prescore's per-CV columns of these rows, from memory: years, education and
        ``LIST_COLUMNS`` (what ``score_table`` would read of them, without the vectors)."""
        rows = np.asarray(positions, dtype=np.int64)
        taken = self.lists.take(pa.array(rows))
        return taken.append_column("experience_months", pa.array(self.experience_months[rows])) \
            .append_column("education_rank", pa.array(self.education_rank[rows]))


def load_pool(dataset: Any, version: int, empty: pa.Table, dim: int) -> PoolArrays:
    """Read ``POOL_COLUMNS`` of every CV in ``dataset`` (``None``: no table yet; ``empty``
    gives the columns' types) a batch at a time, quantizing the vectors as they come into
    arrays sized once (no copy of the whole pool at the end)."""
    n = dataset.count_rows() if dataset is not None else 0
    ids: list[np.ndarray] = []
    months = np.zeros(n, np.int32)
    ranks = np.zeros(n, np.int8)
    lists: list[pa.RecordBatch] = []
    vectors = {c: Int8Rows.allocate(n, dim) for c in SEARCH_VECTOR_COLUMNS}
    sketches = {c: np.zeros((n, SKETCH_DIMS), np.float32) for c in SEARCH_VECTOR_COLUMNS}
    bases: dict[str, np.ndarray] = {}
    # Little read-ahead: each batch in flight holds its float32 vectors.
    batches = (dataset.to_batches(columns=list(POOL_COLUMNS), batch_size=LOAD_BATCH_ROWS, batch_readahead=2,
                                  fragment_readahead=2)
               if dataset is not None else empty.select(list(POOL_COLUMNS)).to_batches())
    start = 0
    for batch in batches:
        end = start + batch.num_rows
        if end == start:
            continue
        ids.append(np.asarray(batch.column("cv_id").to_numpy(zero_copy_only=False), dtype="S"))
        months[start:end] = batch.column("experience_months").to_numpy(zero_copy_only=False)
        ranks[start:end] = batch.column("education_rank").to_numpy(zero_copy_only=False)
        for c in SEARCH_VECTOR_COLUMNS:
            matrix = vector_matrix(batch.column(c))
            vectors[c].set_rows(start, matrix)
            if c not in bases:  # the sketch's directions, from the first batch's first CVs
                bases[c] = Sketch.fit(matrix[:SKETCH_SAMPLE_ROWS])
            sketches[c][start:end] = Sketch.project(bases[c], matrix)
        # A copy (take): a column of the batch keeps the whole decoded batch, vectors and
        # all, alive (the load peaked at 7.7 GB for a million CVs; 4 GB of it this).
        kept = pa.RecordBatch.from_arrays([batch.column(c) for c in LIST_COLUMNS], names=list(LIST_COLUMNS))
        lists.append(kept.take(pa.array(np.arange(kept.num_rows))))
        start = end
    if start != n:
        raise RuntimeError(f"the pool scan read {start} rows of {n}")
    table = (pa.Table.from_batches(lists) if lists else empty.select(list(LIST_COLUMNS))).combine_chunks()
    del lists
    role_counts = pc.list_value_length(table.column("role_months")).to_numpy(zero_copy_only=False)
    pool = PoolArrays(
        version=version,
        cv_ids=np.concatenate(ids) if ids else np.zeros(0, dtype="S1"),
        vectors=vectors,
        sketches={c: Sketch(bases[c] if c in bases else Sketch.fit(np.zeros((0, dim))), sketches[c])
                  for c in SEARCH_VECTOR_COLUMNS},
        experience_months=months,
        education_rank=ranks,
        skills=CodedLists(table.column("skills")),
        norm_titles=CodedLists(table.column("norm_titles")),
        lists=table,
        has_roles=np.asarray(role_counts, dtype=np.int64) > 0,
        dim=dim,
        dataset=dataset,
    )
    # The int8 kernel's packed copies now, so the first query does not wait for them.
    for rows in pool.vectors.values():
        rows.pack()
    _release_freed_memory()
    return pool


def _release_freed_memory() -> None:
    """Hand the load's freed scratch memory back to the system (glibc keeps it otherwise:
    1.5 GB of a million-CV load's 4.5 GB resident set was freed but kept)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
