"""Bulk ingest on Ray Data: read -> extract -> standardize -> embed -> write.

Every stage runs a batch step of ``cvmatch_ray.process``, the same code as every other
front end:

- extract: stateless CPU tasks (``map_batches`` of a function);
- standardize (and the scorer's features): a callable class on an actor pool (the rules
  load the taxonomy once per actor; the vLLM backend holds an engine per actor on a GPU
  share);
- embed: a callable class on an actor pool with fractional ``num_gpus``;
- write: the driver consumes the stream and upserts batches into LanceDB (one writer, so
  no commit conflicts), reporting each batch to the progress actor.

Between stages a row carries the step's outcome for its document, pickled in ``item``.
A document that fails at any stage travels on as a row with ``error``/``stage``/``code``
set; the pipeline never fails because of one file.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import ray
import ray.data

from cvmatch_ray import metrics
from cvmatch_ray.config import Settings
from cvmatch_ray.embed import Embedder
from cvmatch_ray.errors import Stage
from cvmatch_ray.ids import document_id
from cvmatch_ray.pipelines.resources import stage_options
from cvmatch_ray.priority import lower_priority
from cvmatch_ray.process import (
    Failed,
    Kind,
    Outcome,
    Processed,
    RawDocument,
    StageTimes,
    embed_batch,
    extract_batch,
    features_batch,
    standardize_batch,
    write_records,
)
from cvmatch_ray.progress import JobStatus, ProgressClient
from cvmatch_ray.standardize import make_standardizer
from cvmatch_ray.storage.objectstore import filesystem

logger = logging.getLogger(__name__)

#: ``code`` of a row whose bytes are stored already: it passes every stage untouched.
ALREADY_STORED = "already_stored"
#: Steps whose wall time rows carry, each in a ``s_<step>`` column (the writes are the driver's).
_TIMED_STEPS = ("extract", "standardize", "features", "embed")
#: What the stages spend around their steps: Arrow rows <-> Python objects, (un)pickling items.
ROWS = "rows"
_ROW_SCHEMA = pa.schema(
    [("path", pa.string()), ("doc_id", pa.string()), ("item", pa.large_binary()),
     ("stage", pa.string()), ("code", pa.string()), ("error", pa.string())]
    + [(f"s_{step}", pa.float64()) for step in (*_TIMED_STEPS, ROWS)]
)


def list_files(
    inputs: Sequence[str], storage_options: Mapping[str, str] | None = None
) -> tuple[list[str], pafs.FileSystem | None]:
    """Files under local paths or one filesystem URI (s3://, gs://...), sorted, hidden ones skipped.

    An ``s3://`` input is reached with ``storage_options``, the data directory's (the same
    endpoint and credentials: ``storage.objectstore``).
    """
    if len(inputs) == 1 and "://" in inputs[0]:
        fs, root = filesystem(inputs[0], storage_options)
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


def _row(path: str, doc_id: str, item: object | None) -> dict[str, Any]:
    """A row carrying ``item`` (a step's outcome), or a stored document's row when None."""
    row: dict[str, Any] = {"path": path, "doc_id": doc_id, **{f"s_{step}": 0.0 for step in (*_TIMED_STEPS, ROWS)}}
    return row | _carry(item)


def _carry(item: object | None) -> dict[str, Any]:
    """The columns of a row that say what it carries: ``item`` pickled, or that it is stored."""
    if item is None:
        return {"item": b"", "stage": "", "code": ALREADY_STORED, "error": ""}
    failed = item if isinstance(item, Failed) else None
    return {
        "item": pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL),
        "stage": failed.stage.value if failed else "",
        "code": failed.code.value if failed else "",
        "error": failed.message if failed else "",
    }


def _apply(
    rows: list[dict[str, Any]], steps: Sequence[tuple[str, Callable[[list[Any]], list[Any]]]], stage: Stage,
    *, started: float,
) -> pa.Table:
    """Run ``steps`` one after the other over the items the ``rows`` carry (not the stored
    ones'), as one table.

    Counts the failures the steps add, and the time of their calls. Each row gets its share
    of each step's wall time in the step's ``s_<step>`` column, and of the rest of the call
    since ``started`` (rows in and out) in ``s_rows``: summed over the rows, the pipeline's
    own account of where the time went, at no extra cost.
    """
    todo = [i for i, r in enumerate(rows) if r["code"] != ALREADY_STORED]
    spent = StageTimes()
    if todo:
        # Our own rows, pickled by the previous stage of this pipeline.
        items = [pickle.loads(rows[i]["item"]) for i in todo]
        results = items
        with metrics.timed(stage):
            for step_name, step in steps:
                with spent.timed(step_name):
                    results = step(results)
        for i, before, after in zip(todo, items, results, strict=True):
            if isinstance(after, Failed) and not isinstance(before, Failed):
                metrics.record_failure(stage, after.code)
            rows[i].update(_carry(after))
    table = pa.Table.from_pylist(rows, schema=_ROW_SCHEMA)
    if not rows:
        return table
    spent.add(ROWS, max(0.0, time.perf_counter() - started - sum(spent.seconds.values())))
    for step, seconds in spent.seconds.items():
        # Each row's share of the batch's time: the column sums to the stage's time.
        column = f"s_{step}"
        index = table.schema.get_field_index(column)
        table = table.set_column(index, column, pc.add(table.column(column), seconds / len(rows)))
    return table


# ----------------------------------------------------------------------- stages


def extract_stage(batch: pa.Table, *, settings: Settings, kind: Kind, existing: frozenset[str]) -> pa.Table:
    """Bytes -> text. Documents already stored (same bytes, same id) are marked and passed by."""
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for data, path in zip(batch.column("bytes").to_pylist(), batch.column("path").to_pylist()):
        doc = RawDocument(data, kind, Path(path).name)
        rows.append(_row(path, doc.doc_id, None if doc.doc_id in existing else doc))
    return _apply(rows, [("extract", lambda docs: extract_batch(docs, settings))], Stage.extract, started=started)


class StandardizeStage:
    """Text -> profile and the scorer's features; one standardizer per actor (the rules'
    taxonomy, or a vLLM engine).

    The whole batch goes to the backend at once: the LLM backends turn it into one engine
    call, which is where their throughput comes from.
    """

    def __init__(self, settings: Settings) -> None:
        # A bulk batch yields the CPU to the API on the same node (see priority.py).
        lower_priority(settings.background_niceness)
        self.standardizer = make_standardizer(settings)

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.perf_counter()
        steps = [("standardize", lambda items: standardize_batch(items, self.standardizer)), ("features", features_batch)]
        return _apply(batch.to_pylist(), steps, Stage.standardize, started=started)


class EmbedStage:
    """Profiles -> section vectors -> records, one encoder call per batch; one encoder per actor."""

    def __init__(self, settings: Settings) -> None:
        lower_priority(settings.background_niceness)
        # Loading the encoder takes seconds (sentence-transformers' imports, then the model),
        # and Ray Data starts the pipeline only once every pool's actors are constructed:
        # it loads on a thread of its own while the first files are read and standardized.
        self._loading = ThreadPoolExecutor(1, thread_name_prefix="cvmatch-encoder-load").submit(
            Embedder.from_settings, settings
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        embedder = self._loading.result()  # waits for the load; raises what it raised
        started = time.perf_counter()
        return _apply(batch.to_pylist(), [("embed", lambda items: embed_batch(items, embedder))], Stage.embed,
                      started=started)


# -------------------------------------------------------------------- the pipeline


def build_dataset(
    files: Sequence[str], settings: Settings, *, kind: Kind, existing: frozenset[str], filesystem=None
) -> ray.data.Dataset:
    """The lazy Ray Data pipeline over ``files`` (nothing runs until it is consumed)."""
    opts = stage_options(settings)
    # One block per batch of files. Ray Data's default cut 240 files into 5 blocks of 48, and
    # a stage hands a block on only once all of it is done: the encoder waited for the first
    # 48 CVs to be standardized, and the last 48 were encoded after everything else.
    blocks = max(1, -(-len(files) // settings.ingest_batch_size))
    ds = ray.data.read_binary_files(
        list(files), include_paths=True, filesystem=filesystem, override_num_blocks=blocks,
        # No more tasks at once than blocks (Ray Data warns of a limit it cannot reach).
        concurrency=min(opts["read"].tasks or blocks, blocks),
        **opts["read"].remote_options(),  # named parameters: ray_remote_args is deprecated
    )
    ds = ds.map_batches(
        extract_stage, batch_format="pyarrow", fn_kwargs={"settings": settings, "kind": kind, "existing": existing},
        **opts["extract"].map_batches_kwargs(),
    )
    ds = ds.map_batches(
        StandardizeStage, batch_format="pyarrow", fn_constructor_kwargs={"settings": settings},
        **opts["standardize"].map_batches_kwargs(),
    )
    return ds.map_batches(
        EmbedStage, batch_format="pyarrow", fn_constructor_kwargs={"settings": settings},
        **opts["embed"].map_batches_kwargs(),
    )


@dataclass
class IngestReport:
    job_id: str
    status: JobStatus
    outcomes: list[Outcome]
    #: Wall seconds of each step summed over the batches and workers that ran it
    #: (``process.STEPS``), ``rows`` for the stages' conversions around their steps.
    times: StageTimes = field(default_factory=StageTimes)

    @property
    def stored(self) -> int:
        return sum(o.ok and not o.skipped for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


def _outcomes(batch: pa.Table, kind: Kind) -> Iterator[tuple[Outcome, Processed | None]]:
    """Each row's outcome, with what to store for the processed ones."""
    for row in batch.to_pylist():
        if row["code"] == ALREADY_STORED:
            yield Outcome(file=row["path"], kind=kind, id=row["doc_id"], skipped=True), None
            continue
        result: Processed | Failed = pickle.loads(row["item"])  # our own row, from EmbedStage
        yield Outcome.of(row["path"], result), (result if isinstance(result, Processed) else None)


#: Registers ingest jobs on the progress actor while the driver goes on (``_register``).
_REGISTERING = ThreadPoolExecutor(1, thread_name_prefix="cvmatch-ingest-register")


def _register(settings: Settings, job_id: str, files: int, chunks: int) -> ProgressClient:
    """The ingest job created and started on the progress actor (created itself if need be)."""
    progress = ProgressClient(settings)
    progress.call("create", job_id, "ingest", files, total_chunks=chunks, tenant=settings.tenant)
    progress.call("start", job_id)
    return progress


def run_ingest(
    inputs: Sequence[str],
    settings: Settings,
    *,
    kind: Kind = "cv",
    job_id: str | None = None,
    on_progress=None,
) -> IngestReport:
    """Ingest every file under ``inputs`` (local paths or one URI) through Ray Data, into
    ``settings.tenant``'s tables.

    Reports to the progress actor as batches are written; ``on_progress(done, total)`` is
    called too (the CLI's progress bar). Files already stored are reported as skipped.
    """
    files, fs = list_files(inputs, settings.store.storage_options)
    job_id = job_id or "ingest_" + document_id("\n".join(files).encode() + str(time.time_ns()).encode())[:16]
    batch_size = settings.ingest_batch_size
    # The progress actor may need a worker process of its own (seconds on a small node): the
    # job is registered on it while the store opens and the pipeline starts, and waited for
    # before its first report.
    registered = _REGISTERING.submit(_register, settings, job_id, len(files), -(-len(files) // batch_size))

    from cvmatch_ray.storage.tables import Store  # here: the stages' workers never need LanceDB

    store = Store.open(settings.tenant_dir, settings.store)
    existing = frozenset(store.list_cv_ids() if kind == "cv" else store.list_jd_ids())
    outcomes: list[Outcome] = []
    times = StageTimes()
    if files:
        ds = build_dataset(files, settings, kind=kind, existing=existing, filesystem=fs)
        for chunk_index, batch in enumerate(ds.iter_batches(batch_format="pyarrow", batch_size=batch_size)):
            for step in (*_TIMED_STEPS, ROWS):
                times.add(step, pc.sum(batch.column(f"s_{step}")).as_py() or 0.0)
            with times.timed(ROWS):
                pairs = list(_outcomes(batch, kind))
            good = [p for _, p in pairs if p is not None]
            with times.timed("write"):
                write_records(good, store)
            outcomes += [o for o, _ in pairs]
            failures = [{"item_id": o.file, "stage": str(o.stage), "reason": o.error} for o, _ in pairs if not o.ok]
            metrics.record_processed("ingest", len(good))
            registered.result().call("chunk_done", job_id, chunk_index, len(pairs), failures)
            if on_progress is not None:
                on_progress(len(outcomes), len(files))
    status = JobStatus.failed if files and all(not o.ok for o in outcomes) else JobStatus.succeeded
    if kind == "cv" and any(o.ok and not o.skipped for o in outcomes):
        # Whole-pool matching's indexes (match.retrieve): the lookup and full-text indexes
        # (its vector side is held in memory, match.shortlist). After the writes, not per batch.
        store.ensure_search_indexes()
    registered.result().call("finish", job_id, status, "every file failed" if status is JobStatus.failed else None)
    logger.info("ingest job %s: %d files, %d stored, %d failed", job_id, len(files), sum(o.ok and not o.skipped for o in outcomes), sum(not o.ok for o in outcomes))
    return IngestReport(job_id=job_id, status=status, outcomes=sorted(outcomes, key=lambda o: o.file or ""), times=times)
