"""Bulk ingest on Ray Data: read -> extract -> standardize -> embed -> write.

Each stage runs the same functions as the in-process path (``cvmatch_ray.ingest``):

- extract: stateless CPU tasks (``map_batches`` of a function);
- standardize: a callable class on an actor pool (the rules load the taxonomy once per
  actor; the vLLM backend holds an engine per actor on a GPU share);
- embed: a callable class on an actor pool with fractional ``num_gpus``;
- write: the driver consumes the stream and upserts batches into LanceDB (one writer, so
  no commit conflicts), reporting each batch to the progress actor.

A document that fails at any stage travels on as a row with ``error``/``stage``/``code``
set; the pipeline never fails because of one file.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import ray
import ray.data

from cvmatch_ray import metrics
from cvmatch_ray.config import Settings
from cvmatch_ray.embed import Embedder, embedding_dim
from cvmatch_ray.ingest import IngestError, Kind, Outcome, Prepared, embed, extract_text, write
from cvmatch_ray.pipelines.resources import stage_options
from cvmatch_ray.priority import lower_priority
from cvmatch_ray.progress import JobStatus, ProgressClient
from cvmatch_ray.schemas import CVProfile, JDProfile, Provenance
from cvmatch_ray.standardize.base import StandardizationError, make_standardizer, standardize_cvs, standardize_jds
from cvmatch_ray.store import Store, document_id

logger = logging.getLogger(__name__)

# Columns every stage passes on; a failed row keeps its error and carries empty payloads.
ALREADY_STORED = "already_stored"
_ROW = ("path", "doc_id", "text", "flags", "extractor", "profile_json", "provenance_json", "error", "stage", "code")


def list_files(inputs: Sequence[str]) -> tuple[list[str], pafs.FileSystem | None]:
    """Files under local paths or one filesystem URI (s3://, gs://...), sorted, hidden ones skipped."""
    if len(inputs) == 1 and "://" in inputs[0]:
        fs, root = pafs.FileSystem.from_uri(inputs[0])
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        files = [i.path for i in infos if i.type == pafs.FileType.File and not Path(i.path).name.startswith(".")]
        return sorted(files), fs
    files: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += [
                str(f) for f in p.rglob("*") if f.is_file() and not any(s.startswith(".") for s in f.relative_to(p).parts)
            ]
        elif p.is_file():
            files.append(str(p))
        else:
            raise FileNotFoundError(f"no such file or folder: {item}")
    return sorted(files), None


def _empty_row(path: str, doc_id: str) -> dict[str, object]:
    return {k: "" for k in _ROW} | {"path": path, "doc_id": doc_id}


def _table(rows: list[dict[str, object]]) -> pa.Table:
    return pa.table({k: pa.array([str(r[k]) for r in rows], pa.string()) for k in _ROW})


# ----------------------------------------------------------------------- stages


def extract_batch(batch: pa.Table, *, settings: Settings, existing: frozenset[str]) -> pa.Table:
    """Bytes -> text. Documents already stored (same bytes, same id) are marked and passed by."""
    rows = []
    for data, path in zip(batch.column("bytes").to_pylist(), batch.column("path").to_pylist()):
        doc_id = document_id(data)
        row = _empty_row(path, doc_id)
        if doc_id in existing:
            row["code"] = ALREADY_STORED
            rows.append(row)
            continue
        try:
            text, flags, extractor = extract_text(data, filename=Path(path).name, settings=settings)
            row.update(text=text, flags=json.dumps(flags), extractor=extractor)
        except IngestError as e:
            row.update(error=e.message, stage=e.stage, code=e.code)
            metrics.record_failure("extract", e.code)
        rows.append(row)
    return _table(rows)


class StandardizeStage:
    """Text -> profile JSON; holds one standardizer per actor (the rules' taxonomy, or a vLLM engine).

    The whole batch goes to the backend at once: the LLM backends turn it into one engine
    call, which is where their throughput comes from.
    """

    def __init__(self, settings: Settings, kind: Kind) -> None:
        # A bulk batch yields the CPU to the API on the same node (see priority.py).
        lower_priority(settings.background_niceness)
        self.standardizer = make_standardizer(settings)
        self.kind = kind

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        todo = [r for r in rows if not r["error"] and r["code"] != ALREADY_STORED]
        if todo:
            start = time.perf_counter()
            batch_fn = standardize_cvs if self.kind == "cv" else standardize_jds
            for row, profile in zip(todo, batch_fn(self.standardizer, [r["text"] for r in todo])):
                if isinstance(profile, StandardizationError):
                    row.update(error=str(profile), stage="standardize", code="standardization_failed")
                    metrics.record_failure("standardize", "standardization_failed")
                    continue
                provenance = self.standardizer.provenance.model_copy(update={"extractor": row["extractor"]})
                row.update(profile_json=profile.model_dump_json(), provenance_json=provenance.model_dump_json())
            metrics.observe_latency("standardize", (time.perf_counter() - start) / len(todo))
        return _table(rows)


class EmbedStage:
    """Profiles -> section vectors, one encoder call per batch; one encoder per actor."""

    def __init__(self, settings: Settings, kind: Kind) -> None:
        lower_priority(settings.background_niceness)
        self.embedder = Embedder.from_settings(settings)
        self.kind = kind

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        ok = [r for r in rows if not r["error"] and r["code"] != ALREADY_STORED]
        vectors = np.zeros((len(rows), 3 * self.embedder.dim), dtype=np.float32)
        if ok:
            start = time.perf_counter()
            try:
                records = embed([_prepared(r, self.kind) for r in ok], self.embedder)
            except IngestError as e:
                for r in ok:
                    r.update(error=e.message, stage=e.stage, code=e.code)
            else:
                where = {id(r): i for i, r in enumerate(rows)}
                for r, rec in zip(ok, records):
                    vectors[where[id(r)]] = rec.vectors.reshape(-1)
                metrics.observe_latency("embed", time.perf_counter() - start)
        table = _table(rows)
        flat = pa.array(vectors.reshape(-1), pa.float32())
        return table.append_column("vectors", pa.FixedSizeListArray.from_arrays(flat, 3 * self.embedder.dim))


def _prepared(row: dict, kind: Kind) -> Prepared:
    model = CVProfile if kind == "cv" else JDProfile
    return Prepared(
        doc_id=row["doc_id"],
        kind=kind,
        filename=Path(row["path"]).name,
        text=row["text"],
        profile=model.model_validate_json(row["profile_json"]),
        provenance=Provenance.model_validate_json(row["provenance_json"]),
        flags=json.loads(row["flags"] or "[]"),
    )


# -------------------------------------------------------------------- the pipeline


def build_dataset(
    files: Sequence[str], settings: Settings, *, kind: Kind, existing: frozenset[str], filesystem=None
) -> ray.data.Dataset:
    """The lazy Ray Data pipeline over ``files`` (nothing runs until it is consumed)."""
    opts = stage_options(settings)
    ds = ray.data.read_binary_files(list(files), include_paths=True, filesystem=filesystem)
    ds = ds.map_batches(
        extract_batch, batch_format="pyarrow", fn_kwargs={"settings": settings, "existing": existing},
        **opts["extract"].map_batches_kwargs(),
    )
    ds = ds.map_batches(
        StandardizeStage, batch_format="pyarrow", fn_constructor_kwargs={"settings": settings, "kind": kind},
        **opts["standardize"].map_batches_kwargs(),
    )
    return ds.map_batches(
        EmbedStage, batch_format="pyarrow", fn_constructor_kwargs={"settings": settings, "kind": kind},
        **opts["embed"].map_batches_kwargs(),
    )


@dataclass
class IngestReport:
    job_id: str
    status: JobStatus
    outcomes: list[Outcome]

    @property
    def stored(self) -> int:
        return sum(o.ok and not o.skipped for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


def _outcomes_and_records(batch: pa.Table, kind: Kind, dim: int) -> Iterator[tuple[Outcome, Prepared | None, np.ndarray | None]]:
    vectors = batch.column("vectors").combine_chunks().values.to_numpy(zero_copy_only=False).reshape(-1, 3, dim)
    for i, row in enumerate(batch.drop_columns(["vectors"]).to_pylist()):
        if row["code"] == ALREADY_STORED:
            yield Outcome(file=row["path"], kind=kind, id=row["doc_id"], skipped=True), None, None
        elif row["error"]:
            yield Outcome(file=row["path"], kind=kind, id=row["doc_id"], error=row["error"], stage=row["stage"], code=row["code"]), None, None
        else:
            yield Outcome(file=row["path"], kind=kind, id=row["doc_id"]), _prepared(row, kind), vectors[i]


def run_ingest(
    inputs: Sequence[str],
    settings: Settings,
    *,
    kind: Kind = "cv",
    job_id: str | None = None,
    on_progress=None,
) -> IngestReport:
    """Ingest every file under ``inputs`` (local paths or one URI) through Ray Data.

    Reports to the progress actor as batches are written; ``on_progress(done, total)`` is
    called too (the CLI's progress bar). Files already stored are reported as skipped.
    """
    files, fs = list_files(inputs)
    job_id = job_id or "ingest_" + document_id("\n".join(files).encode() + str(time.time_ns()).encode())[:16]
    batch_size = settings.ingest_batch_size
    progress = ProgressClient(settings)
    progress.call("create", job_id, "ingest", len(files), total_chunks=-(-len(files) // batch_size))
    progress.call("start", job_id)

    dim = embedding_dim(settings)
    store = Store(settings.data_dir, dim=dim)
    existing = frozenset(store.list_cv_ids() if kind == "cv" else store.list_jd_ids())
    outcomes: list[Outcome] = []
    if files:
        ds = build_dataset(files, settings, kind=kind, existing=existing, filesystem=fs)
        for chunk_index, batch in enumerate(ds.iter_batches(batch_format="pyarrow", batch_size=batch_size)):
            triples = list(_outcomes_and_records(batch, kind, dim))
            good = [(o, p, v) for o, p, v in triples if p is not None]
            if good:
                write([p.to_record(v) for _, p, v in good], store)
            outcomes += [o for o, _, _ in triples]
            failures = [{"item_id": o.file, "stage": o.stage, "reason": o.error} for o, _, _ in triples if not o.ok]
            metrics.record_processed("ingest", len(good))
            progress.call("chunk_done", job_id, chunk_index, len(triples), failures)
            if on_progress is not None:
                on_progress(len(outcomes), len(files))
    status = JobStatus.failed if files and all(not o.ok for o in outcomes) else JobStatus.succeeded
    if kind == "cv" and any(o.ok and not o.skipped for o in outcomes):
        # Whole-pool matching's indexes (match.retrieve): the full-text index, and ANN
        # indexes once the pool is past retrieval.ann_min_rows. After the writes, not per batch.
        r = settings.retrieval
        store.ensure_search_indexes(ann_min_rows=r.ann_min_rows, ann_index_type=r.ann_index_type)
    progress.call("finish", job_id, status, "every file failed" if status is JobStatus.failed else None)
    logger.info("ingest job %s: %d files, %d stored, %d failed", job_id, len(files), sum(o.ok and not o.skipped for o in outcomes), sum(not o.ok for o in outcomes))
    return IngestReport(job_id=job_id, status=status, outcomes=sorted(outcomes, key=lambda o: o.file or ""))
