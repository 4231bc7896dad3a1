"""What the API does, behind its routes: the upload pipeline, JDs, matching jobs, reads.

One CV upload, in the order its data flows:

1. the route has read the body (size-limited while streaming, see ``http.py``);
2. cheap checks that need no parsing (empty file, unsupported type) answer at once;
3. the same bytes already stored or on their way: answered from what exists, never
   processed twice;
4. the raw bytes, then an upload record naming the progress job, are written as blob
   files (``blobs.py``): from here on the upload survives a crash, and a background
   upload is answered 202;
5. the ``UploadPipeline`` deployment (``pipeline.py``) takes it from there: extract ->
   standardize -> embed on the model deployments, each step reported to the progress
   actor, the row written to LanceDB, the job ends ``done`` with the CV's stats. None of
   that CPU work runs in this replica, whose event loop only accepts and answers.

A failed upload keeps its progress record (so the client can read why) and nothing else.
Uploading the same bytes again starts a new attempt with a new progress job.

Uploads left unfinished by a replica that died are picked up again by
:meth:`APIService.recover_stale_uploads` (the ingress runs it periodically): the blob is
the durable queue, the progress job says whether anyone is still working on it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException

from cvmatch_ray import __version__
from cvmatch_ray.config import Settings
from cvmatch_ray.extract import ExtractionError, detect_kind
from cvmatch_ray.ingest import IngestError, Prepared
from cvmatch_ray.match.rank import UnknownDocument, rank_jobs
from cvmatch_ray.match.retrieve import match_pool
from cvmatch_ray.pipelines.matching import submit_match_job
from cvmatch_ray.progress import JobNotFoundError, JobProgress, JobStatus, ProgressError, UploadStep
from cvmatch_ray.schemas import CVPublic, JDPublic
from cvmatch_ray.serve.blobs import BlobStore, BlobStoreError
from cvmatch_ray.serve.pipeline import INTERNAL_ERROR, UploadRecord, failure_text, report_progress, section_texts
from cvmatch_ray.serve.models import (
    Deleted,
    Health,
    JDAccepted,
    JobsMatchRequest,
    JobsMatchResults,
    MatchAccepted,
    MatchProgress,
    MatchRequest,
    MatchResults,
    PoolMatchResults,
    UploadAccepted,
    UploadProgress,
)
from cvmatch_ray.store import JDRecord, Store, document_id, validate_id

logger = logging.getLogger(__name__)

#: An unfinished upload whose progress has not moved for this long is taken over.
STALE_UPLOAD_AFTER = timedelta(minutes=10)
#: How long a synchronous upload waits for the same bytes being processed elsewhere.
DUPLICATE_WAIT_S = 600.0
#: Threads for blocking calls (about one per request in flight).
BLOCKING_THREADS = 32

T = TypeVar("T")

#: The error a stale upload job ends with when its upload can no longer be processed.
_LOST_UPLOAD = failure_text(
    IngestError("store", INTERNAL_ERROR, "the upload was lost; upload the file again", http_status=500)
)


class ServiceUnavailable(RuntimeError):
    """A backend (a deployment, the progress actor, storage) cannot serve the request now."""


class InvalidRequest(ValueError):
    """Request data that no handler's validation caught (a malformed id in a list...)."""


def _http_status_by_code() -> dict[str, int]:
    """HTTP status of every extraction error code, from the error classes themselves."""
    out: dict[str, int] = {}
    pending: list[type[ExtractionError]] = [ExtractionError]
    while pending:
        cls = pending.pop()
        out[cls.code] = cls.http_status
        pending.extend(cls.__subclasses__())
    return out


_STATUS_BY_CODE = _http_status_by_code()


def _error_from_failure(text: str | None) -> IngestError:
    """Rebuild the ``IngestError`` a failed upload recorded with ``pipeline.failure_text``."""
    code, _, message = (text or "").partition(": ")
    if not message:
        return IngestError("store", INTERNAL_ERROR, text or "the upload failed", http_status=500)
    status = _STATUS_BY_CODE.get(code, 500 if code in (INTERNAL_ERROR, "embedding_failed") else 422)
    stage = "extract" if code in _STATUS_BY_CODE else "standardize" if code == "standardization_failed" else "store"
    return IngestError(stage, code, message, http_status=status)  # type: ignore[arg-type]


def upload_job_prefix(cv_id: str) -> str:
    """What the progress job id of every upload attempt of ``cv_id`` starts with."""
    return f"upload_{cv_id}_"


def new_upload_job_id(cv_id: str) -> str:
    """A fresh progress job id for one upload attempt of ``cv_id``."""
    return f"{upload_job_prefix(cv_id)}{uuid.uuid4().hex[:8]}"


def upload_cv_id(job_id: str) -> str | None:
    """The ``cv_id`` an upload job id names (see :func:`new_upload_job_id`), or None."""
    parts = job_id.split("_")
    return parts[1] if len(parts) == 3 and parts[0] == "upload" and parts[1] else None


class APIService:
    """The API's behaviour, independent of HTTP: routes translate, this does.

    Holds the settings, the LanceDB store, the blob store, the progress actor and the
    handles of the model and upload pipeline deployments. All methods are coroutines; blocking calls (LanceDB,
    files) run in threads so the replica's event loop keeps answering.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        blobs: BlobStore,
        progress: Any,
        extractor: Any,
        standardizer: Any,
        embedder: Any,
        pipeline: Any,
        embedding_model: str,
        standardizer_backend: str,
        upload_concurrency: int = 8,
    ) -> None:
        """Wire the service.

        Args:
            settings: the deployment's settings (``data_dir`` already absolute).
            store: the LanceDB store (``dim`` = the embedder's).
            blobs: where raw uploads are kept.
            progress: the progress actor handle (``get_progress_actor``).
            extractor: handle of the ``Extractor`` deployment.
            standardizer: handle of the ``Standardizer`` deployment.
            embedder: handle of the ``Embedder`` deployment.
            pipeline: handle of the ``UploadPipeline`` deployment.
            embedding_model: the encoder's name, for health and provenance.
            standardizer_backend: the standardizer's backend name, for health.
            upload_concurrency: uploads this replica has in the pipeline at once; the
                others wait, durably accepted, in line (and in this replica's memory).
        """
        self.settings = settings
        self.store = store
        self.blobs = blobs
        self.progress = progress
        self.extractor = extractor
        self.standardizer = standardizer
        self.embedder = embedder
        self.pipeline = pipeline
        self.embedding_model = embedding_model
        self.standardizer_backend = standardizer_backend
        # Uploads this replica is processing, by cv_id: a second upload of the same bytes
        # here waits for the first instead of starting another.
        self._inflight: dict[str, asyncio.Task[CVPublic]] = {}
        self._processing = asyncio.Semaphore(upload_concurrency)
        # Blocking calls (files, LanceDB) get threads of their own rather than asyncio's
        # shared default pool (a handful of threads on a small machine): an upload never
        # waits in line behind another request's LanceDB scan to write its bytes.
        self._threads = ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="cvmatch-api")

    # ---------------------------------------------------------------- helpers

    async def _blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the service's threads, awaited."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, functools.partial(fn, *args, **kwargs))

    async def _job(self, job_id: str) -> JobProgress | None:
        """The progress job ``job_id``, or ``None`` if the actor does not know it."""
        try:
            return await self.progress.get.remote(job_id)
        except JobNotFoundError:
            return None

    async def _report(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        await report_progress(call, *args, **kwargs)

    def _read_upload_record(self, cv_id: str) -> UploadRecord | None:
        data = self.blobs.get("upload", cv_id)
        if data is None:
            return None
        try:
            return UploadRecord.model_validate_json(data)
        except ValidationError:
            logger.warning("upload record of %s is unreadable; treating the upload as new", cv_id)
            return None

    def _accept(self, cv_id: str, data: bytes, record: UploadRecord) -> None:
        """Write the raw bytes, then the record that points at them (both durable)."""
        self.blobs.put("cv", cv_id, data)
        self.blobs.put("upload", cv_id, record.model_dump_json().encode())

    # --------------------------------------------------------------- CV upload

    async def upload_cv(
        self, data: bytes, *, filename: str | None, content_type: str | None, background: bool
    ) -> tuple[int, BaseModel]:
        """Accept one CV upload; returns ``(http_status, body)``.

        With ``background`` the answer is ``202 UploadAccepted`` as soon as the bytes are
        durable (``200`` if these bytes are already a stored CV); otherwise ``200
        CVPublic`` once the CV is stored.

        Raises:
            IngestError: the document is refused (its ``http_status`` says why); for a
                background upload only the checks that need no parsing raise here.
            ServiceUnavailable: the bytes could not be stored durably.
        """
        if not data:
            raise IngestError("extract", "empty_document", "the file is empty (0 bytes)")
        if len(data) > self.settings.max_upload_bytes:
            raise IngestError(
                "read", "document_too_large",
                f"the file has {len(data)} bytes, more than the limit of {self.settings.max_upload_bytes}",
                http_status=413,
            )
        # One thread hop for every blocking check: under load each hop is a wait in line.
        cv_id, record, stored = await self._blocking(self._inspect, data)
        task = self._inflight.get(cv_id)
        if task is None:
            existing = await self._existing_upload(cv_id, record, stored)
            # Checked again: another request for these bytes may have started meanwhile.
            task = self._inflight.get(cv_id)
            if task is None:
                if existing is not None:
                    return await self._answer_duplicate(cv_id, existing, background)
                task = self._start_upload(cv_id, data, filename=filename, content_type=content_type)
        elif background:
            # The same bytes, already on their way in this replica.
            return await self._answer_accepted(cv_id, task, duplicate=True)
        if background:
            return await self._answer_accepted(cv_id, task)
        return 200, await asyncio.shield(task)

    def _inspect(self, data: bytes) -> tuple[str, UploadRecord | None, bool]:
        """``(cv_id, upload record, stored)`` of an upload; refuses unsupported types.

        ``stored`` is only looked up when there is no upload record (a CV ingested by the
        CLI or a batch job has none).
        """
        try:
            # Bytes-only sniffing: the filename is never used, so no name reaches a message.
            detect_kind(data)
        except ExtractionError as e:
            raise IngestError("extract", e.code, e.message, http_status=e.http_status) from e
        cv_id = document_id(data)
        record = self._read_upload_record(cv_id)
        return cv_id, record, record is None and self.store.has_cv(cv_id)

    async def _existing_upload(self, cv_id: str, record: UploadRecord | None, stored: bool) -> UploadProgress | None:
        """What is known of earlier uploads of these bytes that is still valid, or None."""
        if record is not None:
            job = await self._job(record.job_id)
            if job is None:
                # Accepted, but the job was not registered yet (or the actor lost it).
                return UploadProgress(
                    cv_id=cv_id, job_id=record.job_id, status=JobStatus.queued, step=UploadStep.queued,
                    percent=0.0, created_at=record.accepted_at,
                )
            if not job.status.is_terminal():
                return UploadProgress.of(cv_id, job)
            if job.status == JobStatus.succeeded and await self._blocking(self.store.has_cv, cv_id):
                return UploadProgress.of(cv_id, job)
            # Failed, cancelled, or deleted since: a new attempt.
            return None
        if stored:
            # Ingested by the CLI or a batch job: no upload record, but stored all the same.
            return UploadProgress(cv_id=cv_id, status=JobStatus.succeeded, step=UploadStep.done, percent=100.0)
        return None

    async def _answer_duplicate(self, cv_id: str, existing: UploadProgress, background: bool) -> tuple[int, BaseModel]:
        done = existing.step == UploadStep.done
        if background:
            return (200 if done else 202), UploadAccepted(cv_id=cv_id, status=existing.step, duplicate=True)
        if not done:
            await self._wait_for_upload(cv_id, existing.job_id)
        record = await self._blocking(self.store.get_cv, cv_id)
        if record is None:
            raise UnknownDocument(f"no CV with id {cv_id!r}")
        return 200, record.to_public()

    async def _wait_for_upload(self, cv_id: str, job_id: str | None) -> None:
        """Wait until another replica's upload of ``cv_id`` ends; raise its failure."""
        deadline = time.monotonic() + DUPLICATE_WAIT_S
        delay = 0.05
        while time.monotonic() < deadline:
            job = await self._job(job_id) if job_id else None
            if job is not None and job.status.is_terminal():
                if job.status != JobStatus.succeeded:
                    raise _error_from_failure(job.error)
                return
            if job is None and await self._blocking(self.store.has_cv, cv_id):
                return
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)
        raise ServiceUnavailable(f"upload {cv_id} is still being processed elsewhere")

    def _start_upload(self, cv_id: str, data: bytes, *, filename: str | None, content_type: str | None) -> asyncio.Task:
        record = UploadRecord(
            cv_id=cv_id,
            job_id=new_upload_job_id(cv_id),
            filename=filename,
            content_type=content_type,
            size=len(data),
            accepted_at=datetime.now(UTC),
        )
        accepted = asyncio.Event()
        return self._track(cv_id, self._run_upload(record, data, accepted), accepted)

    def _track(self, cv_id: str, work: Coroutine[Any, Any, CVPublic], accepted: asyncio.Event) -> asyncio.Task:
        """Run ``work`` as this replica's upload of ``cv_id``; ``accepted`` is set once its bytes are durable."""
        task = asyncio.create_task(work)
        # Duplicate uploads wait on it (see _answer_accepted).
        task.accepted = accepted  # type: ignore[attr-defined]
        # Registered before the first await: a concurrent upload of the same bytes in this
        # replica finds it and never starts a second pipeline.
        self._inflight[cv_id] = task
        task.add_done_callback(lambda t: self._upload_finished(cv_id, t))
        return task

    def _upload_finished(self, cv_id: str, task: asyncio.Task) -> None:
        if self._inflight.get(cv_id) is task:
            del self._inflight[cv_id]
        if not task.cancelled() and task.exception() is not None:
            # Retrieved here so a background failure (already reported to the progress
            # actor) is not logged again by asyncio as "never retrieved".
            err = task.exception()
            logger.info("upload %s failed: %s", cv_id, getattr(err, "code", type(err).__name__))

    async def _answer_accepted(self, cv_id: str, task: asyncio.Task, *, duplicate: bool = False) -> tuple[int, BaseModel]:
        """202 once ``task`` has stored the bytes durably (its failure to do so raises)."""
        accepted: asyncio.Event = task.accepted  # type: ignore[attr-defined]
        waiter = asyncio.ensure_future(accepted.wait())
        try:
            await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not accepted.is_set():
            task.result()  # raises why the bytes could not be stored
        if not duplicate:
            return 202, UploadAccepted(cv_id=cv_id, status=UploadStep.queued)
        if task.done():
            if task.cancelled() or task.exception() is not None:
                step = UploadStep.failed
            else:
                step = UploadStep.done
        else:
            try:
                step = (await self.upload_progress(cv_id)).step
            except UnknownDocument:
                # Only if the CV was deleted meanwhile; this upload will store it again.
                step = UploadStep.queued
        return (200 if step == UploadStep.done else 202), UploadAccepted(cv_id=cv_id, status=step, duplicate=True)

    async def _run_upload(self, record: UploadRecord, data: bytes, accepted: asyncio.Event) -> CVPublic:
        """Store the bytes durably, then take them through every step to a stored CV."""
        cv_id, job_id = record.cv_id, record.job_id
        try:
            await self._blocking(self._accept, cv_id, data, record)
        except BlobStoreError as e:
            logger.error("upload %s: raw bytes not stored: %s", cv_id, e.__cause__ or e)
            raise ServiceUnavailable("the upload could not be stored; try again") from e
        accepted.set()
        # Not written through: the upload record just written is the durable note of this
        # upload, and the book writes the job with its next batch of changes.
        await self._report(self.progress.create, job_id, "upload", 1, durable=False)
        return await self._process_upload(record, data)

    async def _process_upload(self, record: UploadRecord, data: bytes) -> CVPublic:
        """The upload pipeline deployment's run of an accepted upload (see ``pipeline.py``)."""
        async with self._processing:
            try:
                return await self.pipeline.process.remote(record, data)
            except IngestError:
                raise
            except (RayError, RayServeException) as e:
                # The pipeline replica died or is gone: the upload stays accepted (its
                # blob and progress job) and ``recover_stale_uploads`` takes it up again.
                logger.error("upload %s: pipeline unavailable: %s", record.cv_id, type(e).__name__)
                raise IngestError(
                    "store", INTERNAL_ERROR, f"processing failed ({type(e).__name__})", http_status=500
                ) from e

    async def recover_stale_uploads(self, *, stale_after: timedelta = STALE_UPLOAD_AFTER, limit: int = 200) -> int:
        """Process again uploads whose progress stopped moving (their replica died).

        The progress actor hands each stale job to one caller (``claim_stale`` touches it),
        so API replicas running this side by side do not restart the same upload twice. A
        stale job that can no longer be processed (its upload record or raw bytes are
        gone, or the record names a later attempt) is ended as failed, so it is not looked
        at again every round.

        Args:
            stale_after: how long an unfinished upload's progress must have stood still.
            limit: most stale jobs taken in one call.

        Returns:
            How many uploads were restarted.
        """
        jobs: list[JobProgress] = await self.progress.claim_stale.remote(
            "upload", stale_after.total_seconds(), limit=limit
        )
        restarted = 0
        for job in jobs:
            cv_id = upload_cv_id(job.job_id)
            if cv_id is not None and cv_id in self._inflight:
                continue  # this replica is on it (waiting for a pipeline slot)
            record = data = None
            if cv_id is not None:
                record = await self._blocking(self._read_upload_record, cv_id)
                data = await self._blocking(self.blobs.get, "cv", cv_id)
            if record is None or record.job_id != job.job_id or data is None:
                logger.warning("upload job %s is stale and its upload is gone; ending it", job.job_id)
                await self._report(self.progress.finish, job.job_id, JobStatus.failed, _LOST_UPLOAD)
                continue
            logger.info("upload %s: restarting a stale upload", cv_id)
            done = asyncio.Event()
            done.set()  # the bytes are durable already
            self._track(cv_id, self._process_upload(record, data), done)
            restarted += 1
        return restarted

    # --------------------------------------------------------------- CV reads

    async def upload_progress(self, cv_id: str) -> UploadProgress:
        """Where the latest upload of ``cv_id`` is.

        Raises:
            UnknownDocument: no upload of these bytes and no stored CV with this id.
        """
        record = await self._blocking(self._read_upload_record, _checked_id(cv_id, "cv_id"))
        if record is not None:
            job = await self._job(record.job_id)
            if job is None:
                return UploadProgress(
                    cv_id=cv_id, job_id=record.job_id, status=JobStatus.queued, step=UploadStep.queued,
                    percent=0.0, created_at=record.accepted_at,
                )
            if job.status != JobStatus.succeeded or await self._blocking(self.store.has_cv, cv_id):
                return UploadProgress.of(cv_id, job)
            raise UnknownDocument(f"CV {cv_id} was deleted")
        if await self._blocking(self.store.has_cv, cv_id):
            return UploadProgress(cv_id=cv_id, status=JobStatus.succeeded, step=UploadStep.done, percent=100.0)
        raise UnknownDocument(f"no upload of CV {cv_id}")

    async def get_cv(self, cv_id: str) -> CVPublic:
        """The stored CV ``cv_id``.

        Raises:
            UnknownDocument: not stored.
        """
        record = await self._blocking(self.store.get_cv, _checked_id(cv_id, "cv_id"))
        if record is None:
            raise UnknownDocument(f"no CV with id {cv_id!r}")
        return record.to_public()

    async def delete_cv(self, cv_id: str) -> Deleted:
        """Remove a CV from every table: its row and vectors, raw bytes, match results, upload jobs.

        Every upload attempt's progress job goes (found by job id prefix). Match jobs that
        scored the CV keep their progress job (it names a JD, not the CV); their result
        rows for the CV go with the CV.

        Raises:
            UnknownDocument: nothing was stored under ``cv_id``.
            ServiceUnavailable: the progress actor could not forget the upload jobs (the
                rest is deleted; deleting again finishes the job).
        """
        _checked_id(cv_id, "cv_id")

        def delete() -> bool:
            stored = self.store.delete_cv(cv_id)
            raw = self.blobs.delete("cv", cv_id)
            # The upload record goes too: the same bytes uploaded again start afresh.
            note = self.blobs.delete("upload", cv_id)
            return stored or raw or note

        found = await self._blocking(delete)
        try:
            # Every attempt's job, found by id prefix: the record named only the latest.
            job_ids: list[str] = await self.progress.job_ids.remote(upload_job_prefix(cv_id))
            forgotten: int = await self.progress.forget.remote(job_ids) if job_ids else 0
        except (ProgressError, RayError) as e:
            logger.error("CV %s: upload jobs not forgotten: %s", cv_id, type(e).__name__)
            raise ServiceUnavailable("the CV's upload progress could not be removed; try again") from e
        if not (found or forgotten):
            raise UnknownDocument(f"no CV with id {cv_id!r}")
        logger.info("CV %s deleted", cv_id)
        return Deleted(cv_id=cv_id)

    # -------------------------------------------------------------------- JDs

    async def upload_jd(self, data: bytes, *, filename: str | None, content_type: str | None) -> JDAccepted:
        """Standardize, embed and store one JD (text as UTF-8 bytes, or a file).

        Raises:
            IngestError: the document is refused.
        """
        if not data.strip():
            raise IngestError("extract", "empty_document", "the job description is empty")
        if len(data) > self.settings.max_upload_bytes:
            raise IngestError("read", "document_too_large", "the job description is too large", http_status=413)
        jd_id = document_id(data)
        existing = await self._blocking(self.store.get_jd, jd_id)
        if existing is not None:
            return JDAccepted(jd_id=jd_id, profile=existing.profile, duplicate=True)
        text, flags, extractor = await self.extractor.extract.remote(data, None)
        profile, provenance = await self.standardizer.standardize.remote(text, "jd")
        prepared = Prepared(jd_id, "jd", filename, text, profile, provenance.model_copy(update={"extractor": extractor}), list(flags))
        vectors = await self.embedder.embed_sections.remote(section_texts(prepared))
        record = prepared.to_record(vectors)
        assert isinstance(record, JDRecord)

        def store() -> None:
            # Raw bytes first: a JD row never exists without its source.
            self.blobs.put("jd", jd_id, data)
            self.store.upsert_jds([record])

        await self._blocking(store)
        logger.info("JD %s stored", jd_id)
        return JDAccepted(jd_id=jd_id, profile=record.profile)

    async def get_jd(self, jd_id: str) -> JDPublic:
        """The stored JD ``jd_id``.

        Raises:
            UnknownDocument: not stored.
        """
        record = await self._blocking(self.store.get_jd, _checked_id(jd_id, "jd_id"))
        if record is None:
            raise UnknownDocument(f"no JD with id {jd_id!r}")
        return record.to_public()

    # --------------------------------------------------------------- matching

    async def submit_match(self, request: MatchRequest) -> MatchAccepted:
        """Start a chunked matching job in the background.

        Raises:
            UnknownDocument: the JD is not stored.
            InvalidRequest: a CV id is malformed (a request error, not a per-item failure).
        """
        jd_id = _checked_id(request.jd_id, "jd_id")
        if not await self._blocking(self.store.has_jd, jd_id):
            raise UnknownDocument(f"no JD with id {jd_id!r}")
        cv_ids = None
        if request.cv_ids is not None:
            try:
                cv_ids = [validate_id(c, "cv_id") for c in request.cv_ids]
            except ValueError as e:
                raise InvalidRequest(str(e)) from e
        job_id = await self._blocking(
            submit_match_job,
            self.settings,
            jd_id=jd_id,
            cv_ids=cv_ids,
            chunk_size=request.chunk_size,
            dim=self.store.dim,
        )
        # What the results endpoint needs to remember of the request (its top_k).
        meta = {"jd_id": jd_id, "top_k": request.top_k}
        await self._blocking(self.blobs.put, "job", job_id, json.dumps(meta).encode())
        logger.info("match job %s started for JD %s (%s CVs)", job_id, jd_id, len(cv_ids) if cv_ids is not None else "all")
        return MatchAccepted(job_id=job_id, jd_id=jd_id, status=JobStatus.queued)

    async def _match_job(self, job_or_jd_id: str) -> JobProgress:
        job = await self._job(job_or_jd_id)
        if job is None:
            job = await self.progress.latest_for_jd.remote(job_or_jd_id)
        if job is None or job.kind != "match":
            raise UnknownDocument(f"no matching job for {job_or_jd_id!r}")
        return job

    async def match_progress(self, job_or_jd_id: str) -> MatchProgress:
        """A matching job's progress, by job id or by JD id (that JD's latest job).

        Raises:
            UnknownDocument: no such job.
        """
        return MatchProgress.of(await self._match_job(job_or_jd_id))

    async def match_jobs(self, request: JobsMatchRequest) -> JobsMatchResults:
        """The best stored JDs for a stored CV, scored exactly as the forward direction.

        Raises:
            UnknownDocument: the CV is not stored.
            InvalidRequest: an id is malformed.
        """
        cv_id = _checked_id(request.cv_id, "cv_id")
        try:
            jd_ids = [validate_id(j, "jd_id") for j in request.jd_ids] if request.jd_ids is not None else None
        except ValueError as e:
            raise InvalidRequest(str(e)) from e
        results = await self._blocking(
            rank_jobs, self.store, cv_id, jd_ids, top_k=request.top_k, weights=self.settings.weights
        )
        return JobsMatchResults(cv_id=cv_id, count=len(results), results=results)

    async def match_results(self, job_id: str, *, top_k: int | None = None) -> MatchResults:
        """A job's results so far, best first; ``top_k`` defaults to the request's.

        Raises:
            UnknownDocument: no such job.
        """
        job = await self._match_job(job_id)
        if top_k is None:
            raw = await self._blocking(self.blobs.get, "job", job.job_id)
            if raw is not None:
                top_k = json.loads(raw).get("top_k")
        results = await self._blocking(self.store.read_matches, job.job_id, limit=top_k)
        return MatchResults(
            job_id=job.job_id,
            jd_id=job.jd_id,
            status=job.status,
            complete=job.status.is_terminal(),
            total=job.total,
            processed=job.processed,
            failed=job.failed,
            count=len(results),
            results=results,
        )

    async def best_cvs(self, jd_id: str, *, top_k: int) -> PoolMatchResults:
        """The best ``top_k`` stored CVs for a stored JD, over the whole pool (``match_pool``).

        Raises:
            UnknownDocument: no such JD.
        """
        jd_id = _checked_id(jd_id, "jd_id")
        found = await self._blocking(
            match_pool, self.store, jd_id, top_k=top_k, weights=self.settings.weights, settings=self.settings.retrieval
        )
        return PoolMatchResults(
            jd_id=jd_id, pool=found.pool, candidates=found.candidates, exact=found.exact,
            milliseconds=round(found.timings_ms["total"], 1), count=len(found.results), results=found.results,
        )

    # ----------------------------------------------------------------- health

    def health(self) -> Health:
        """What this replica fronts; answers without touching storage or other actors."""
        return Health(
            version=__version__,
            standardizer=self.standardizer_backend,
            embedding_model=self.embedding_model,
            embedding_dim=self.store.dim,
            auth=bool(self.settings.api_keys),
        )


def _checked_id(value: str, what: str) -> str:
    """A well-formed document id, or ``UnknownDocument`` (a malformed id names nothing)."""
    try:
        return validate_id(value, what)
    except ValueError as e:
        raise UnknownDocument(f"no document with {what} {value[:80]!r}") from e
