"""Progress tracking: the pure book, its LanceDB write-through, the Ray actor, and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import lancedb
import pytest
import ray

from cvmatch_ray import metrics
from cvmatch_ray.config import Settings
from cvmatch_ray.errors import ProcessingError
from cvmatch_ray.progress import (
    ACTOR_NAME,
    MAX_FAILURES_KEPT,
    FailureRecord,
    InvalidReportError,
    JobConflictError,
    JobNotFoundError,
    JobStatus,
    JobTable,
    ProgressActorConflictError,
    ProgressBook,
    ProgressClient,
    ProgressStoreError,
    QueuedJob,
    StepReport,
    UploadStep,
    WorkQueue,
    get_progress_actor,
    resolve_data_dir,
)
from cvmatch_ray.progress.records import ChunkSet
from cvmatch_ray.schemas import CVStats


class FakeClock:
    """Wall clock the test moves by hand."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def book(clock: FakeClock) -> ProgressBook:
    return ProgressBook(clock=clock)


def _versions(data_dir: Path) -> int:
    return lancedb.connect(str(data_dir)).open_table(JobTable.NAME).version


# ------------------------------------------------------------------ pure book


def test_chunk_reports_are_monotonic_and_idempotent(book: ProgressBook) -> None:
    book.create("m1", "match", total=100, total_chunks=4, jd_id="jd1")
    assert book.get("m1").status == JobStatus.queued

    p = book.chunk_done("m1", 2, 25)
    assert p.status == JobStatus.running  # the first report starts a queued job
    assert (p.processed, p.current_chunk, p.percent) == (25, 1, 25.0)

    # Duplicates (a retried task, a replayed actor call) count once.
    for _ in range(3):
        p = book.chunk_done("m1", 2, 25)
    assert (p.processed, p.current_chunk, p.percent) == (25, 1, 25.0)

    seen = [p.percent]
    for index in (0, 3):  # out of order is fine
        p = book.chunk_done("m1", index, 25, [{"item_id": f"cv{index}", "stage": "score", "reason": "no text"}])
        seen.append(p.percent)
    assert seen == sorted(seen)
    assert (p.processed, p.failed, p.current_chunk) == (75, 2, 3)
    assert [f.item_id for f in p.failures] == ["cv0", "cv3"]

    done = book.finish("m1", JobStatus.succeeded)
    assert done.percent == 100.0 and done.eta_seconds == 0.0 and done.finished_at is not None


def test_chunks_reported_together_count_as_reported_one_by_one(book: ProgressBook) -> None:
    book.create("m1", "match", total=100, total_chunks=4, jd_id="jd1")
    book.chunk_done("m1", 1, 25)
    fail = [{"item_id": "cv9", "stage": "match", "reason": "no stored CV with this id"}]
    p = book.chunks_done("m1", [(0, 25, []), (1, 25, []), (3, 25, fail)])  # chunk 1 again: counted once
    assert (p.status, p.processed, p.failed, p.current_chunk, p.percent) == (JobStatus.running, 75, 1, 3, 75.0)
    assert [f.item_id for f in p.failures] == ["cv9"]
    # One bad report counts none of its batch.
    with pytest.raises(InvalidReportError):
        book.chunks_done("m1", [(2, 25, []), (4, 25, [])])
    assert book.get("m1").current_chunk == 3


def test_terminal_states_are_final(book: ProgressBook) -> None:
    book.create("m1", "match", total=10, total_chunks=2)
    book.chunk_done("m1", 0, 5)
    cancelled = book.cancel("m1")
    assert cancelled.status == JobStatus.cancelled and cancelled.status.is_terminal()

    # A late chunk, a second ending and a step change are all ignored.
    assert book.chunk_done("m1", 1, 5).processed == 5
    assert book.finish("m1", JobStatus.succeeded).status == JobStatus.cancelled
    assert book.finish("m1", JobStatus.failed, error="boom").error is None
    assert book.start("m1").status == JobStatus.cancelled
    assert book.get("m1").percent == 50.0


def test_eta_from_mean_seconds_per_chunk(book: ProgressBook, clock: FakeClock) -> None:
    book.create("m1", "match", total=1000, total_chunks=10)
    book.start("m1")
    clock.advance(10)
    book.chunk_done("m1", 0, 100)
    clock.advance(20)
    p = book.chunk_done("m1", 1, 100)
    # 30 s for 2 chunks: 15 s each, 8 to go.
    assert p.seconds_per_chunk == pytest.approx(15.0)
    assert p.eta_seconds == pytest.approx(120.0)
    assert p.total_seconds == pytest.approx(30.0)

    clock.advance(5)  # no report: the ETA keeps counting down, elapsed keeps counting up
    p = book.get("m1")
    assert p.eta_seconds == pytest.approx(115.0)
    assert p.total_seconds == pytest.approx(35.0)
    clock.advance(1000)
    assert book.get("m1").eta_seconds == 0.0

    p = book.finish("m1", JobStatus.failed, error="worker lost\nat node 3")
    assert p.total_seconds == pytest.approx(1035.0)
    assert p.error == "worker lost at node 3"
    assert p.percent == 20.0  # a failed job keeps the bar where it stopped


def test_eta_without_chunks_uses_item_rate(book: ProgressBook, clock: FakeClock) -> None:
    book.create("i1", "ingest", total=40)
    book.start("i1")
    clock.advance(8)
    p = book.chunk_done("i1", 0, 10)
    assert p.eta_seconds == pytest.approx(24.0)  # 0.8 s per item, 30 items left


def test_invalid_reports_are_rejected(book: ProgressBook) -> None:
    book.create("m1", "match", total=10, total_chunks=2)
    with pytest.raises(InvalidReportError):
        book.chunk_done("m1", 2, 5)  # past total_chunks
    with pytest.raises(InvalidReportError):
        book.chunk_done("m1", -1, 5)
    with pytest.raises(InvalidReportError):
        book.chunk_done("m1", 0, 1, [{"item_id": "a", "stage": "s", "reason": "r"}] * 2)
    with pytest.raises(InvalidReportError):
        book.finish("m1", JobStatus.running)
    with pytest.raises(InvalidReportError):
        book.create("bad", "match", total=-1)
    with pytest.raises(JobNotFoundError):
        book.get("nope")
    with pytest.raises(JobNotFoundError):
        book.chunk_done("nope", 0, 1)
    # Same id, same kind: the first job is returned untouched; another kind is a conflict.
    assert book.create("m1", "match", total=999).total == 10
    with pytest.raises(JobConflictError):
        book.create("m1", "upload", total=1)
    assert book.get("m1").processed == 0


def test_failures_are_bounded_but_counted(book: ProgressBook) -> None:
    n = MAX_FAILURES_KEPT + 50
    book.create("i1", "ingest", total=n, total_chunks=2)
    half = [FailureRecord(item_id=f"d{i}", stage="extract", reason="encrypted_pdf") for i in range(n // 2)]
    book.chunk_done("i1", 0, len(half), half)
    rest = [{"item_id": f"e{i}", "stage": "extract", "reason": "x" * 5000} for i in range(n - n // 2)]
    p = book.chunk_done("i1", 1, len(rest), rest)
    assert p.failed == n
    assert len(p.failures) == MAX_FAILURES_KEPT
    assert p.failures[0].item_id == "d0"
    assert all(len(f.reason) <= 500 for f in p.failures)


def test_upload_steps(book: ProgressBook) -> None:
    book.create("u1", "upload", total=1)
    assert book.get("u1").step == UploadStep.queued
    p = book.set_step("u1", UploadStep.standardizing)
    assert (p.status, p.step, p.percent) == (JobStatus.running, UploadStep.standardizing, 35.0)
    # A late "extracting" (fire-and-forget calls can arrive out of order) is ignored.
    p = book.set_step("u1", UploadStep.extracting)
    assert (p.step, p.percent) == (UploadStep.standardizing, 35.0)
    stats = CVStats(skills_count=12, responsibilities_count=4, pii_fields_found=["email"])
    p = book.set_step("u1", UploadStep.done, stats=stats)
    assert (p.status, p.step, p.percent, p.processed) == (JobStatus.succeeded, UploadStep.done, 100.0, 1)
    assert p.stats == stats

    book.create("u2", "upload", total=1)
    book.set_step("u2", UploadStep.embedding)
    p = book.set_step("u2", UploadStep.failed, error="embedding model missing")
    assert (p.status, p.step, p.percent, p.failed) == (JobStatus.failed, UploadStep.failed, 70.0, 1)
    assert [s.percent for s in UploadStep][:-1] == sorted(s.percent for s in UploadStep if s.percent is not None)


def test_step_reports_in_one_call_are_applied_in_order_with_one_write(tmp_path: Path, clock: FakeClock) -> None:
    book = ProgressBook(JobTable(str(tmp_path)), clock=clock, coalesce_s=1.0)
    queue = WorkQueue(book, "upload", clock=clock)
    queue.put(_jobs("u1", "u2", "u3"))
    assert _ids(queue.claim(3)) == ["u1", "u2", "u3"]
    book.flush()
    before = _versions(tmp_path)
    stats = CVStats(skills_count=5)
    applied = book.report_steps(
        [
            StepReport("u1", UploadStep.extracting),
            StepReport("u2", UploadStep.extracting),
            StepReport("gone", UploadStep.extracting),  # forgotten meanwhile: skipped
            StepReport("u1", UploadStep.standardizing),
            StepReport("u2", UploadStep.failed, error="no_text_layer: no text"),
            StepReport("u1", UploadStep.done, stats),
            StepReport("u3", UploadStep.embedding),
        ]
    )
    assert applied == 6
    # Two endings in the batch, one table write; the intermediate step of u3 went with it.
    assert _versions(tmp_path) == before + 1
    reloaded = ProgressBook(JobTable(str(tmp_path)))
    assert (reloaded.get("u1").step, reloaded.get("u1").stats) == (UploadStep.done, stats)
    assert (reloaded.get("u2").status, reloaded.get("u2").error) == (JobStatus.failed, "no_text_layer: no text")
    assert reloaded.get("u3").step == UploadStep.embedding
    # Only steps, not the order of a batch, move a job: a late step is still ignored.
    assert book.report_steps([StepReport("u3", UploadStep.extracting)]) == 1
    assert book.get("u3").step == UploadStep.embedding
    # Nothing to write through: the intermediate step waits for the flusher.
    assert _versions(tmp_path) == before + 1


def test_list_and_latest_for_jd(book: ProgressBook, clock: FakeClock) -> None:
    for i in range(3):
        book.create(f"m{i}", "match", total=10, jd_id="jdA")
        clock.advance(1)
    book.create("u0", "upload", total=1)
    assert book.latest_for_jd("jdA").job_id == "m2"
    assert book.latest_for_jd("unknown") is None
    assert [p.job_id for p in book.list()] == ["u0", "m2", "m1", "m0"]
    assert [p.job_id for p in book.list(kind="match", limit=2)] == ["m2", "m1"]


def test_local_data_dirs_are_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("./cvmatch_data") == str(tmp_path / "cvmatch_data")
    assert resolve_data_dir("s3://bucket/cvmatch") == "s3://bucket/cvmatch"


def test_chunk_set_ranges() -> None:
    s = ChunkSet()
    for i in (5, 3, 4, 0, 9, 1):
        assert s.add(i)
    assert not s.add(4)
    assert s.ranges() == [[0, 1], [3, 5], [9, 9]]
    assert s.count == 6
    assert 2 not in s and 3 in s and 9 in s and 10 not in s
    s.add(2)
    assert s.ranges() == [[0, 5], [9, 9]]
    again = ChunkSet(s.ranges())
    assert again.ranges() == s.ranges() and again.count == 7


# --------------------------------------------------------- LanceDB write-through


def test_write_through_and_reload(tmp_path: Path, clock: FakeClock) -> None:
    book = ProgressBook(JobTable(str(tmp_path)), clock=clock, coalesce_s=3600)
    book.create("m1", "match", total=100, total_chunks=4, jd_id="jd1")
    clock.advance(4)
    book.chunk_done("m1", 0, 25)
    book.chunk_done("m1", 2, 25, [{"item_id": "cv7", "stage": "score", "reason": "empty profile"}])
    book.create("u1", "upload", total=1)
    book.set_step("u1", UploadStep.extracting)  # coalesced, then carried by the next write
    book.create("u2", "upload", total=1)
    book.set_step("u2", UploadStep.done)  # terminal: always written
    book.set_step("u1", UploadStep.embedding)  # coalesced: not written yet

    reloaded = ProgressBook(JobTable(str(tmp_path)), clock=clock)
    m1 = reloaded.get("m1")
    assert m1 == book.get("m1")
    assert m1.status == JobStatus.running  # a running job stays running across restarts
    assert (m1.processed, m1.failed, m1.current_chunk) == (50, 1, 2)
    # The finished-chunk set is persisted too: a replayed report still counts once.
    assert reloaded.chunk_done("m1", 2, 25).processed == 50
    assert reloaded.chunk_done("m1", 1, 25).processed == 75
    assert reloaded.get("u2").status == JobStatus.succeeded
    assert reloaded.get("u1").step == UploadStep.extracting
    assert reloaded.latest_for_jd("jd1").job_id == "m1"

    # flush() writes what was coalesced.
    assert book.flush() >= 1
    assert ProgressBook(JobTable(str(tmp_path))).get("u1").step == UploadStep.embedding

    rows = lancedb.connect(str(tmp_path)).open_table("jobs").to_arrow().to_pylist()
    by_id = {r["job_id"]: r for r in rows}
    assert set(by_id) == {"m1", "u1", "u2"}
    assert by_id["m1"]["jd_id"] == "jd1" and by_id["u2"]["status"] == "succeeded"


def test_coalesced_step_is_written_once_the_interval_passes(tmp_path: Path, clock: FakeClock) -> None:
    book = ProgressBook(JobTable(str(tmp_path)), clock=clock, coalesce_s=1.0)
    book.create("u1", "upload", total=1)
    book.set_step("u1", UploadStep.extracting)
    before = _versions(tmp_path)
    clock.advance(2)
    book.set_step("u1", UploadStep.storing)
    assert _versions(tmp_path) == before + 1
    assert ProgressBook(JobTable(str(tmp_path))).get("u1").step == UploadStep.storing


def test_finished_jobs_are_evicted_but_still_readable(tmp_path: Path, clock: FakeClock) -> None:
    book = ProgressBook(JobTable(str(tmp_path)), clock=clock, max_cached_jobs=2)
    for i in range(4):
        book.create(f"m{i}", "match", total=1, jd_id=f"jd{i}")
        clock.advance(1)
        book.finish(f"m{i}", JobStatus.succeeded)
    book.create("running", "match", total=5, jd_id="jd9")
    listed = {p.job_id for p in book.list(limit=100)}
    assert "running" in listed and len(listed) <= 3
    assert book.get("m0").status == JobStatus.succeeded  # read back from the table
    assert book.latest_for_jd("jd1").job_id == "m1"
    reloaded = ProgressBook(JobTable(str(tmp_path)), max_cached_jobs=2)
    assert reloaded.get("running").status == JobStatus.queued


class CountingTable(JobTable):
    """The real table, counting the point lookups the book makes."""

    finds = 0

    def find(self, job_id: str):  # type: ignore[no-untyped-def]
        type(self).finds += 1
        return super().find(job_id)


def test_only_evicted_jobs_are_looked_up_in_the_table(tmp_path: Path, clock: FakeClock) -> None:
    book = ProgressBook(CountingTable(str(tmp_path)), clock=clock, max_cached_jobs=1)
    for i in range(3):
        book.create(f"m{i}", "match", total=1, jd_id=f"jd{i}")
        clock.advance(1)
        book.finish(f"m{i}", JobStatus.succeeded)
    # A new job's create and a lookup of an unknown id cost no table query...
    book.create("u_new", "upload", total=1)
    with pytest.raises(JobNotFoundError):
        book.get("u_unknown")
    assert CountingTable.finds == 0
    # ... an evicted job is read back once, then served from memory.
    assert book.get("m0").status == JobStatus.succeeded
    assert book.get("m0").status == JobStatus.succeeded
    assert CountingTable.finds == 1
    assert book.known(["m0", "m1", "m2", "m3"]) == ["m0", "m1", "m2"]  # evicted or not


def test_concurrent_reports_share_writes(tmp_path: Path) -> None:
    book = ProgressBook(JobTable(str(tmp_path)))
    chunks, threads = 48, 8
    book.create("m1", "match", total=chunks * 10, total_chunks=chunks)
    errors: list[BaseException] = []

    def report(worker: int) -> None:
        try:
            for i in range(worker, chunks, threads):
                book.chunk_done("m1", i, 10)
                book.chunk_done("m1", i, 10)  # duplicate from a retry
        except BaseException as e:  # surfaced by the assert below
            errors.append(e)

    pool = [threading.Thread(target=report, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors
    assert book.get("m1").processed == chunks * 10
    # Every report returned only after it was written, so a reload sees all of them.
    assert ProgressBook(JobTable(str(tmp_path))).get("m1").current_chunk == chunks


def test_table_is_compacted_every_n_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cvmatch_ray.storage import lance

    compacted: list[str] = []
    real_compact = lance.compact
    monkeypatch.setattr(lance, "compact", lambda name, t: (compacted.append(name), real_compact(name, t))[1])
    table = JobTable(str(tmp_path), compact_every=3)
    book = ProgressBook(table)
    book.create("m1", "match", total=30, total_chunks=3)
    book.chunk_done("m1", 0, 10)
    assert not table.optimize_if_due() and compacted == []
    book.chunk_done("m1", 1, 10)
    book.flush()  # the third write made compaction due; flush() runs it
    assert compacted == [JobTable.NAME]
    assert not table.optimize_if_due()
    assert ProgressBook(JobTable(str(tmp_path))).get("m1").processed == 20


class _FlakyTable(JobTable):
    fail_next = 0

    def upsert(self, rows):  # type: ignore[no-untyped-def]
        if self.fail_next:
            self.fail_next -= 1
            raise OSError("object store unavailable")
        super().upsert(rows)


def test_store_errors_keep_changes_for_the_next_write(tmp_path: Path) -> None:
    table = _FlakyTable(str(tmp_path))
    book = ProgressBook(table)
    book.create("m1", "match", total=20, total_chunks=2)
    table.fail_next = 1
    with pytest.raises(ProgressStoreError):
        book.chunk_done("m1", 0, 10)
    # The chunk is counted in memory (a retry is a no-op) and written by the next flush.
    assert book.chunk_done("m1", 0, 10).processed == 10
    book.flush()
    assert ProgressBook(JobTable(str(tmp_path))).get("m1").processed == 10


def _jobs(*job_ids: str) -> list[tuple[str, str]]:
    """Upload jobs with the CV each works on (``cv_<job id>``)."""
    return [(job_id, f"cv_{job_id}") for job_id in job_ids]


def _ids(claimed: list[QueuedJob]) -> list[str]:
    return [job.job_id for job in claimed]


def test_queued_jobs_are_claimed_once_oldest_first(tmp_path: Path, clock: FakeClock) -> None:
    book = ProgressBook(JobTable(str(tmp_path)), clock=clock)
    queue = WorkQueue(book, "upload", clock=clock)
    assert queue.put(_jobs("u1", "u2")) == 2
    clock.advance(1)
    assert queue.put(_jobs("u3", "u1")) == 1  # an existing id is left alone
    book.create("u_sync", "upload", total=1, cv_id="cv_sync")  # created by its own worker: never handed out
    book.set_step("u_sync", UploadStep.extracting)
    assert book.get("u1").step == UploadStep.queued and book.get("u1").status == JobStatus.queued
    assert book.get("u1").cv_id == "cv_u1"

    assert queue.claim(2) == [("u1", "cv_u1", "default"), ("u2", "cv_u2", "default")]
    book.flush()  # readers see what is written; claims are written with the next batch
    assert book.get("u1").status == JobStatus.running and book.get("u1").started_at is not None
    book.forget(["u3"])  # gone before anyone took it
    assert queue.claim(10) == []
    assert WorkQueue(book, "match", clock=clock).claim(10) == []

    # Not written through by put; the flusher's write makes a reloaded book's queue hand
    # out what was still waiting, with the CV it names.
    queue.put(_jobs("u4"))
    book.flush()
    reloaded = ProgressBook(JobTable(str(tmp_path)), clock=clock)
    assert WorkQueue(reloaded, "upload", clock=clock).claim(10) == [("u4", "cv_u4", "default")]


def test_readers_see_an_unwritten_job_as_created(tmp_path: Path, clock: FakeClock) -> None:
    # Until its first write a job reads as it was created: showing its live state could
    # be taken back when a write of an earlier state lands (progress seen going backwards).
    book = ProgressBook(JobTable(str(tmp_path)), clock=clock, coalesce_s=3600)
    queue = WorkQueue(book, "upload", clock=clock)
    queue.put(_jobs("u1"))
    assert _ids(queue.claim(1)) == ["u1"]
    book.set_step("u1", UploadStep.embedding)
    seen = book.get("u1")
    assert (seen.status, seen.step) == (JobStatus.queued, UploadStep.queued)
    book.flush()
    assert book.get("u1").step == UploadStep.embedding


def test_claim_waits_for_work(book: ProgressBook) -> None:
    queue = WorkQueue(book, "upload")
    got: list[list[str]] = []
    waiter = threading.Thread(target=lambda: got.append(_ids(queue.claim(5, wait_s=60))))
    waiter.start()
    queue.put(_jobs("late"))
    waiter.join(60)
    # Woken by the put (or, if the put came first, served at once): never polling.
    assert got == [["late"]]
    assert queue.claim(5, wait_s=0.05) == []  # nothing came: an empty answer, not a hang


def test_claims_wait_for_a_burst_to_settle(book: ProgressBook) -> None:
    mono = FakeClock(start=100.0)
    queue = WorkQueue(book, "upload", clock=mono)
    queue.put(_jobs("a"))
    # Just put in line: not handed out while more may be arriving.
    assert queue.claim(5, settle_s=0.3) == []
    mono.advance(0.3)
    assert _ids(queue.claim(5, settle_s=0.3)) == ["a"]
    # Without settle_s, work goes out at once.
    queue.put(_jobs("b"))
    assert _ids(queue.claim(5)) == ["b"]

    # A burst that keeps arriving is not waited out: once the oldest job has waited
    # max_delay_s, the claim takes what is there.
    for i in range(4):  # a new upload every 0.125 s: never quiet for settle_s
        queue.put(_jobs(f"burst{i}"))
        assert queue.claim(100, settle_s=0.3, max_delay_s=0.5) == []
        mono.advance(0.125)
    queue.put(_jobs("burst4"))  # the oldest has now waited max_delay_s
    assert _ids(queue.claim(100, settle_s=0.3, max_delay_s=0.5)) == [f"burst{i}" for i in range(5)]


def test_stalled_jobs_are_put_back_in_line(tmp_path: Path, clock: FakeClock) -> None:
    book = ProgressBook(JobTable(str(tmp_path)), clock=clock)
    queue = WorkQueue(book, "upload", clock=clock)
    queue.put(_jobs("u_old", "u_done", "u_waiting"))
    assert _ids(queue.claim(2)) == ["u_old", "u_done"]
    book.set_step("u_old", UploadStep.standardizing)
    book.finish("u_done", JobStatus.failed, "extract: no text")
    book.create("m_old", "match", total=10, total_chunks=1)
    book.start("m_old")
    clock.advance(60)
    book.create("u_fresh", "upload", total=1)
    book.set_step("u_fresh", UploadStep.extracting)
    clock.advance(5)

    # Running, stalled uploads only: not finished, fresh, still queued or other kinds.
    assert queue.requeue_stalled(30) == ["u_old"]
    book.flush()
    old = book.get("u_old")
    assert (old.status, old.step) == (JobStatus.queued, UploadStep.standardizing)  # no step back
    assert queue.requeue_stalled(30) == []  # touched: not put back twice
    assert queue.claim(10) == [("u_waiting", "cv_u_waiting", "default"), ("u_old", "cv_u_old", "default")]
    assert book.known(["u_old", "nope", "m_old"]) == ["u_old", "m_old"]


def test_leases_are_renewed_by_heartbeats_and_a_poison_job_is_failed(tmp_path: Path, clock: FakeClock) -> None:
    book = ProgressBook(JobTable(str(tmp_path)), clock=clock)
    queue = WorkQueue(book, "upload", clock=clock)
    queue.put(_jobs("u_alive", "u_dead"))
    assert _ids(queue.claim(2)) == ["u_alive", "u_dead"]
    for _ in range(3):  # 3 x 20 s: only the job whose worker heartbeats keeps its lease
        clock.advance(20)
        assert book.heartbeat(["u_alive", "u_unknown"]) == 1
    assert queue.requeue_stalled(30, max_attempts=3) == ["u_dead"]
    # Claimed twice more and lost twice more: the third lost lease fails it for good.
    for attempt in (2, 3):
        assert _ids(queue.claim(1)) == ["u_dead"]
        book.flush()  # readers see what is written
        assert book.get("u_dead").attempts == attempt
        clock.advance(31)
        book.heartbeat(["u_alive"])
        expected = ["u_dead"] if attempt < 3 else []
        assert queue.requeue_stalled(30, max_attempts=3) == expected
    book.flush()
    dead = book.get("u_dead")
    assert (dead.status, dead.error_code, dead.error_stage) == (JobStatus.failed, "poison_document", "store")
    assert queue.claim(10) == [] and book.get("u_alive").status == JobStatus.running
    # A restarted book (a new actor) knows how often each job was claimed.
    assert ProgressBook(JobTable(str(tmp_path)), clock=clock).get("u_alive").attempts == 1


def test_a_released_job_is_claimed_again_until_its_attempts_run_out(book: ProgressBook) -> None:
    queue = WorkQueue(book, "upload")
    queue.put(_jobs("u1"))
    for attempt in (1, 2):
        assert _ids(queue.claim(1)) == ["u1"]
        assert queue.release("u1", max_attempts=3).status == JobStatus.queued
    assert _ids(queue.claim(1)) == ["u1"]
    assert queue.release("u1", max_attempts=3).error_code == "poison_document"
    assert queue.claim(1) == []
    assert queue.release("u1", max_attempts=3).status == JobStatus.failed  # ended: left as it is


def test_forget_removes_jobs_from_memory_and_table(tmp_path: Path, clock: FakeClock) -> None:
    table = JobTable(str(tmp_path), erase_grace=timedelta(0))
    book = ProgressBook(table, clock=clock, coalesce_s=3600, max_cached_jobs=1)
    for attempt in ("a1", "a2"):
        book.create(attempt, "upload", total=1, cv_id="cv1")
        clock.advance(1)
        book.finish(attempt, JobStatus.failed, "extract: no text")
    book.create("a3", "upload", total=1, cv_id="cv1")
    book.set_step("a3", UploadStep.extracting)  # coalesced: not written yet
    book.create("x", "upload", total=1, cv_id="cv10")  # another CV
    book.create("m1", "match", total=1, jd_id="jd1")
    assert book.get("a1").status == JobStatus.failed  # evicted, read back from the table

    ids = book.jobs_of_cv("cv1")
    assert ids == ["a1", "a2", "a3"]  # evicted or not
    assert book.forget([*ids, "unknown"]) == 3
    assert book.forget(ids) == 0  # idempotent (a replayed actor call)
    assert book.jobs_of_cv("cv1") == []
    for job_id in ids:
        with pytest.raises(JobNotFoundError):
            book.get(job_id)
    # A late report on a forgotten job finds nothing, and flush() writes nothing back.
    with pytest.raises(JobNotFoundError):
        book.set_step("a3", UploadStep.embedding)
    book.flush()

    reloaded = ProgressBook(JobTable(str(tmp_path)), clock=clock)
    assert reloaded.jobs_of_cv("cv1") == []
    assert reloaded.jobs_of_cv("cv10") == ["x"]
    assert {p.job_id for p in reloaded.list(limit=100)} == {"x", "m1"}
    rows = lancedb.connect(str(tmp_path)).open_table(JobTable.NAME).to_arrow().column("job_id").to_pylist()
    assert set(rows) == {"m1", "x"}


def test_jobs_are_found_in_their_own_tenant_only(tmp_path: Path, clock: FakeClock) -> None:
    # The same CV and JD ids in two tenants (the same bytes): each tenant's lookups see its
    # own jobs, in memory, evicted, after a reload, and through the work queue.
    book = ProgressBook(JobTable(str(tmp_path)), clock=clock, max_cached_jobs=1)
    queue = WorkQueue(book, "upload", clock=clock)
    queue.put([QueuedJob("ua", "cv1", "acme"), QueuedJob("ub", "cv1", "beta"), ("ud", "cv1")])
    assert sorted(queue.claim(10)) == [("ua", "cv1", "acme"), ("ub", "cv1", "beta"), ("ud", "cv1", "default")]
    book.create("ma", "match", total=1, jd_id="jd1", tenant="acme")
    clock.advance(1)
    book.create("mb", "match", total=1, jd_id="jd1", tenant="beta")
    for job_id in ("ua", "ub", "ud", "ma", "mb"):
        book.finish(job_id, JobStatus.succeeded)
        clock.advance(1)
    book.flush()
    for b in (book, ProgressBook(JobTable(str(tmp_path)), clock=clock, max_cached_jobs=1)):
        assert b.jobs_of_cv("cv1", "acme") == ["ua"]
        assert b.jobs_of_cv("cv1", "beta") == ["ub"]
        assert b.jobs_of_cv("cv1") == ["ud"]
        assert b.latest_for_jd("jd1", "acme").job_id == "ma"
        assert b.latest_for_jd("jd1", "beta").job_id == "mb"
        assert b.latest_for_jd("jd1") is None
        assert b.get("ua").tenant == "acme"


def test_forget_in_memory_only(book: ProgressBook) -> None:
    book.create("u1", "upload", total=1, cv_id="cv1")
    book.create("u2", "upload", total=1, cv_id="cv2")
    assert book.jobs_of_cv("cv1") == ["u1"]
    assert book.forget(["u1"]) == 1
    assert [p.job_id for p in book.list()] == ["u2"]


# --------------------------------------------------------------------- metrics


def test_metrics_are_noops_outside_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_metrics", None)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    metrics.record_processed("extract", 3)
    metrics.record_failure("extract", "encrypted_pdf")
    metrics.observe_latency("extract", 0.2)
    metrics.record_match_chunks()
    with metrics.timed("embed"):
        pass
    assert metrics._metrics is None
    with pytest.raises(ValueError):
        metrics.observe_latency("extract", -1.0)


# ------------------------------------------------------------------ on real Ray


@pytest.fixture(scope="module")
def ray_local(ray_cluster) -> None:
    """The session's own Ray head (never another cluster this machine may run)."""


@pytest.fixture
def settings(ray_local: None, tmp_path: Path) -> Iterator[Settings]:
    """Settings with their own data dir and namespace; the test's actor is killed after."""
    s = Settings(data_dir=str(tmp_path / "db"), ray_namespace=f"cvmatch-test-{uuid.uuid4().hex[:8]}")
    yield s
    with contextlib.suppress(ValueError):  # ValueError: the test already killed it for good
        ray.kill(ray.get_actor(ACTOR_NAME, namespace=s.ray_namespace), no_restart=True)


def _wait_until_dead(actor: ray.actor.ActorHandle, timeout_s: float = 60.0) -> None:
    # ray.kill only asks the GCS: calls sent right after it may still be served.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get(actor.get.remote("probe"), timeout=10)
        except JobNotFoundError:
            time.sleep(0.1)
        except ray.exceptions.RayActorError:
            return
    raise AssertionError("actor still alive after ray.kill")


def _num_restarts(actor: ray.actor.ActorHandle) -> int:
    # The GCS actor table (no dashboard needed, unlike ray.util.state).
    return ray._private.state.actors(actor_id=actor._actor_id.hex())["NumRestarts"]


@pytest.mark.slow
def test_metrics_record_inside_ray(ray_local: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_metrics", None)
    metrics.record_processed("extract", 2)
    metrics.record_processed(UploadStep.embedding, 0)  # nothing to count, no error
    metrics.record_failure(UploadStep.extracting, "encrypted_pdf")
    with metrics.timed("standardize"):
        pass
    metrics.record_match_chunks(3)
    m = metrics._get()
    assert m is not None and m is metrics._get()  # created once per process
    assert m.failures.info["tag_keys"] == ("stage", "reason")
    assert m.latency.info["name"] == "cvmatch_stage_latency_seconds"


@pytest.mark.slow
def test_actor_reports_and_cancel(settings: Settings) -> None:
    actor = get_progress_actor(settings)
    assert get_progress_actor(settings)._actor_id == actor._actor_id
    client = ProgressClient(settings)
    client.call("create", "m1", "match", 30, total_chunks=3, jd_id="jd1")
    p = client.call("chunk_done", "m1", 0, 10, [FailureRecord(item_id="cv1", stage="score", reason="no skills")])
    assert (p.processed, p.failed) == (10, 1)
    ray.get(actor.cancel.remote("m1"))
    # A pipeline learns of the cancel from the status its next report returns.
    assert client.call("chunk_done", "m1", 1, 10).status == JobStatus.cancelled
    assert ray.get(actor.latest_for_jd.remote("jd1")).processed == 10


@pytest.mark.slow
def test_client_batches_step_reports(settings: Settings) -> None:
    client = ProgressClient(settings)
    for job_id in ("u1", "u2"):
        client.call("create", job_id, "upload", 1, cv_id=f"cv_{job_id}")

    async def upload_steps() -> None:
        for step in (UploadStep.extracting, UploadStep.standardizing, UploadStep.embedding):
            client.report_step("u1", step)
            client.report_step("u2", step)
        client.report_step("u2", UploadStep.failed, error=ProcessingError("extract", "no_text_layer", "no text"))
        await client.report_step("u1", UploadStep.done, CVStats(skills_count=3))

    asyncio.run(upload_steps())
    u1, u2 = client.call("get", "u1"), client.call("get", "u2")
    assert (u1.step, u1.stats.skills_count, u1.cv_id) == (UploadStep.done, 3, "cv_u1")
    assert (u2.status, u2.error, u2.error_code, u2.error_stage) == (JobStatus.failed, "no text", "no_text_layer", "extract")


@pytest.mark.slow
def test_actor_killed_for_good_is_recreated_from_lancedb(settings: Settings) -> None:
    actor = get_progress_actor(settings)
    ray.get(actor.create.remote("m1", "match", 40, total_chunks=4, jd_id="jd1"))
    for i in (0, 1):
        ray.get(actor.chunk_done.remote("m1", i, 10))
    before = ray.get(actor.get.remote("m1"))

    ray.kill(actor, no_restart=True)
    _wait_until_dead(actor)

    fresh = get_progress_actor(settings)
    assert fresh._actor_id != actor._actor_id
    after = ray.get(fresh.get.remote("m1"))
    assert after.status == JobStatus.running
    assert (after.processed, after.current_chunk, after.started_at) == (20, 2, before.started_at)
    # A client that still holds the dead actor's handle gets the new one and resends.
    client = ProgressClient(settings, actor=actor)
    assert client.call("chunk_done", "m1", 1, 10).processed == 20  # counted before the crash
    assert client.actor._actor_id == fresh._actor_id
    assert client.call("chunk_done", "m1", 2, 10).processed == 30
    assert client.call("finish", "m1", JobStatus.succeeded).percent == 100.0


@pytest.mark.slow
def test_actor_restarts_in_place_and_reloads(settings: Settings) -> None:
    actor = get_progress_actor(settings)
    ray.get(actor.create.remote("i1", "ingest", 20, total_chunks=2))
    ray.get(actor.chunk_done.remote("i1", 0, 10, [{"item_id": "d3", "stage": "extract", "reason": "empty"}]))

    ray.kill(actor, no_restart=False)
    # Same handle: max_restarts=-1 brings the actor back and max_task_retries=-1 replays
    # calls that hit the dead one.
    deadline = time.monotonic() + 60
    while _num_restarts(actor) < 1:
        assert time.monotonic() < deadline, "actor was not restarted"
        time.sleep(0.1)
    p = ray.get(actor.get.remote("i1"), timeout=120)
    assert (p.processed, p.failed, p.failures[0].item_id) == (10, 1, "d3")
    p = ray.get(actor.chunk_done.remote("i1", 1, 10), timeout=60)
    assert p.processed == 20
    assert get_progress_actor(settings)._actor_id == actor._actor_id


@pytest.mark.slow
def test_actor_refuses_another_data_dir(settings: Settings, tmp_path: Path) -> None:
    get_progress_actor(settings)
    other = settings.model_copy(update={"data_dir": str(tmp_path / "elsewhere")})
    with pytest.raises(ProgressActorConflictError):
        get_progress_actor(other)
