"""What the API does, behind its routes: the upload pipeline, JDs, matching jobs, reads.

One CV upload, in the order its data flows:

1. the route has read the body (size-limited while streaming, see ``http.py``);
2. cheap checks that need no parsing (empty file, unsupported type) answer at once;
3. the same bytes already accepted (processing, queued or stored): answered from what
   exists, never processed twice;
4. the upload record and the raw bytes are written as one blob file (``blobs.py``), the
   uploads accepted meanwhile in the same thread and made durable together (a group
   commit): from here on the upload survives a crash, and a background upload is
   answered 202;
5. a background upload's job is put in line on the progress actor (the jobs of uploads
   accepted within a few milliseconds go in one call), where an ``UploadPipeline``
   replica (``upload_worker.py``) claims it: the steps of ``cvmatch_ray.process`` on the
   model deployments, each step reported, the row written to LanceDB, the job ends ``done``
   with the CV's stats. A synchronous upload is handed to the pipeline directly and
   waited for. None of that CPU work runs in this replica, whose event loop only accepts
   and answers.

A failed upload keeps its progress record (so the client can read why) and nothing else.
Uploading the same bytes again starts a new attempt with a new progress job.

:meth:`APIService.recover_uploads` (the ingress runs it periodically) puts back in line the
uploads nobody is processing: jobs whose progress stopped moving (their pipeline replica
died) and accepted uploads whose job never reached the progress actor, every tenant's. The
blob is the durable queue; the progress actor is the line in front of the workers.

Each tenant's CVs, JDs, uploads and results are in its own store and blob area
(``Settings.tenant_dir``); a request is served by :meth:`APIService.for_tenant` of its key's
tenant. Matching (jobs, whole-pool ranking) is ``matching_service.py``.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException

from cvmatch_ray import __version__
from cvmatch_ray.config import Settings
from cvmatch_ray.errors import ErrorCode, ProcessingError, Stage
from cvmatch_ray.ids import document_id
from cvmatch_ray.errors import UnknownDocument
from cvmatch_ray.process import RawDocument, features_batch, sniff, unwrap
from cvmatch_ray.progress import (
    JobNotFoundError,
    JobProgress,
    JobStatus,
    ProgressClient,
    ProgressError,
    QueuedJob,
    UploadStep,
)
from cvmatch_ray.schemas import CVPublic, JDPublic
from cvmatch_ray.serve.errors import ServiceUnavailable, checked_id
from cvmatch_ray.serve.matching_service import MatchingService
from cvmatch_ray.serve.models import (
    Deleted,
    Health,
    JDAccepted,
    UploadAccepted,
    UploadProgress,
)
from cvmatch_ray.serve.upload_writer import UploadQueueSender, UploadWriter
from cvmatch_ray.serve.upload_worker import (
    UploadRecord,
    new_upload_job_id,
    read_upload,
    unstored_uploads,
)
from cvmatch_ray.storage.blobs import BlobStore
from cvmatch_ray.storage.erasure import ErasureError
from cvmatch_ray.storage.records import JDRecord
from cvmatch_ray.storage.tables import Store
from cvmatch_ray.storage.tenants import list_tenants

logger = logging.getLogger(__name__)


def _utc_now() -> datetime:
    """The current time, aware UTC (``APIService``'s default clock)."""
    return datetime.now(UTC)


#: How long health waits for the progress actor to answer.
HEALTH_TIMEOUT_S = 5.0
#: Uploads up to this size are inspected on the event loop, larger ones in a thread.
INLINE_INSPECT_BYTES = 256 * 1024
#: How long a synchronous upload waits for the same bytes being processed elsewhere.
DUPLICATE_WAIT_S = 600.0
#: Threads for blocking calls (about one per request in flight).
BLOCKING_THREADS = 32

T = TypeVar("T")

@dataclass(frozen=True)
class _Admission:
    """What accepting an upload's bytes found: a new attempt, or an earlier upload's state."""

    record: UploadRecord
    existing: UploadProgress | None = None  # None: this is a new attempt


class APIService(MatchingService):
    """The API's behaviour, independent of HTTP: routes translate, this does.

    Holds the settings, the LanceDB store, the blob store, the progress actor and the
    handles of the model and upload pipeline deployments. All methods are coroutines; blocking calls (LanceDB,
    files) run in threads so the replica's event loop keeps answering.

    One tenant's service (``settings.tenant``, whose data is ``settings.tenant_dir``): the
    routes call :meth:`for_tenant` of the caller's tenant, a view with that tenant's store
    and blobs, so what a request reads, lists or writes is its tenant's data only.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        blobs: BlobStore,
        progress: ProgressClient,
        extractor: Any,
        standardizer: Any,
        embedder: Any,
        pipeline: Any,
        embedding_model: str,
        standardizer_backend: str,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        """Wire the service.

        Args:
            settings: the deployment's settings (``data_dir`` already absolute).
            store: the LanceDB store of ``settings.tenant`` (``dim`` = the embedder's).
            blobs: where that tenant's raw uploads are kept.
            progress: the client of the progress actor (it gets the actor again after
                it died; when it cannot, uploads and health answer 503).
            extractor: handle of the ``Extractor`` deployment.
            standardizer: handle of the ``Standardizer`` deployment.
            embedder: handle of the ``Embedder`` deployment.
            pipeline: handle of the ``UploadPipeline`` deployment.
            embedding_model: the encoder's name, for health and provenance.
            standardizer_backend: the standardizer's backend name, for health.
            clock: the current time (aware UTC), for when uploads are accepted and how old
                they are (injectable for tests).
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
        self._clock = clock
        # Uploads being accepted, and synchronous uploads being processed, in this
        # replica, by cv_id: a second upload of the same bytes here joins the first
        # instead of starting another.
        self._admitting: dict[str, asyncio.Future[_Admission]] = {}
        self._processing: dict[str, asyncio.Task[CVPublic]] = {}
        # Blocking calls (files, LanceDB) get threads of their own rather than asyncio's
        # shared default pool (a handful of threads on a small machine): an upload never
        # waits in line behind another request's LanceDB scan to write its bytes.
        self._threads = ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="cvmatch-api")
        self.uploads = UploadWriter(blobs, self._blocking)
        self.queue = UploadQueueSender(progress)
        # The other tenants' views of this service, by tenant, opened on first use.
        self._tenants: dict[str, APIService] = {}

    async def for_tenant(self, tenant: str) -> APIService:
        """This service as ``tenant`` sees it: that tenant's store and blob area, the progress
        actor, deployments and threads shared; opened on the tenant's first request.

        Raises:
            ValueError: ``tenant`` is not a valid tenant name.
        """
        if tenant == self.settings.tenant:
            return self
        view = self._tenants.get(tenant)
        if view is None:
            settings = self.settings.model_copy(update={"tenant": tenant})
            store = await self._blocking(Store.open, settings.tenant_dir, settings.store, dim=self.store.dim)
            # A shallow copy shares what every tenant shares (the progress client, the
            # handles, the threads, the queue sender, the views); the tenant's own is new.
            view = copy.copy(self)
            blobs = BlobStore(settings.tenant_dir, settings.store.storage_options)
            view.settings, view.store, view.blobs = settings, store, blobs
            view.uploads = UploadWriter(view.blobs, view._blocking)
            view._admitting, view._processing = {}, {}
            view = self._tenants.setdefault(tenant, view)
        return view

    def tenant_stores(self) -> list[Store]:
        """The store of this service's tenant and those of the tenant views opened so far."""
        return [self.store, *(view.store for view in self._tenants.values())]

    # ---------------------------------------------------------------- helpers

    async def _blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the service's threads, awaited."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, functools.partial(fn, *args, **kwargs))

    async def _job(self, job_id: str) -> JobProgress | None:
        """The progress job ``job_id``, or ``None`` if the actor does not know it."""
        try:
            return await self.progress.acall("get", job_id)
        except JobNotFoundError:
            return None

    # --------------------------------------------------------------- CV upload

    async def upload_cv(
        self, data: bytes, *, filename: str | None, content_type: str | None, background: bool
    ) -> UploadAccepted | CVPublic:
        """Accept one CV upload.

        With ``background`` the answer is an ``UploadAccepted`` as soon as the bytes are
        durable (its ``status`` is ``done`` if these bytes are already a stored CV);
        otherwise the ``CVPublic`` once the CV is stored.

        Raises:
            ProcessingError: the document is refused (its ``code`` says why); for a
                background upload only the checks that need no parsing raise here.
            ServiceUnavailable: the bytes could not be stored durably.
        """
        if not data:
            raise ProcessingError(Stage.extract, ErrorCode.empty_document, "the file is empty (0 bytes)")
        if len(data) > self.settings.max_upload_bytes:
            raise ProcessingError(
                Stage.read, ErrorCode.document_too_large,
                f"the file has {len(data)} bytes, more than the limit of {self.settings.max_upload_bytes}",
            )
        # A CV-sized file is sniffed and hashed at once (well under a millisecond); a large
        # one in a thread, so that it never stalls the event loop for the other requests.
        cv_id = _inspect(data) if len(data) <= INLINE_INSPECT_BYTES else await self._blocking(_inspect, data)
        admission = self._admitting.get(cv_id)
        joined = admission is not None
        if admission is None:
            # Registered before the first await: a concurrent upload of the same bytes in
            # this replica joins this one and never writes a second record.
            admission = asyncio.ensure_future(
                self._admit(cv_id, data, filename=filename, content_type=content_type, queue=background)
            )
            self._admitting[cv_id] = admission
            admission.add_done_callback(lambda _: self._admitting.pop(cv_id, None))
        admitted = await asyncio.shield(admission)
        new = admitted.existing is None and not joined
        logger.info("upload %s %s (%d bytes, background=%s)", cv_id, "accepted" if new else "is a duplicate",
                    len(data), background)
        if background:
            if new:
                return UploadAccepted(cv_id=cv_id, status=UploadStep.queued)
            step = admitted.existing.step if admitted.existing is not None else await self._upload_step(cv_id)
            return UploadAccepted(cv_id=cv_id, status=step, duplicate=True)
        processing = self._processing.get(cv_id)
        if processing is not None:  # started by _admit, for this request or another
            return await asyncio.shield(processing)
        existing = admitted.existing
        if existing is None or existing.step != UploadStep.done:
            await self._wait_for_upload(cv_id, admitted.record.job_id)
        record = await self._blocking(self.store.get_cv, cv_id)
        if record is None:
            raise UnknownDocument(f"no CV with id {cv_id!r}")
        return record.to_public()

    async def _admit(
        self, cv_id: str, data: bytes, *, filename: str | None, content_type: str | None, queue: bool
    ) -> _Admission:
        """Store the upload durably, unless an upload of these bytes is live or done.

        A new upload is then put in line for the pipeline (``queue``) or handed to it
        directly (tracked in ``_processing``).
        """
        record = UploadRecord(
            cv_id=cv_id, job_id=new_upload_job_id(), filename=filename, content_type=content_type,
            size=len(data), accepted_at=self._clock(),
        )
        earlier = await self.uploads.store_unless_present(record, data)
        if earlier is not None:
            existing = await self._existing_upload(cv_id, earlier)
            if existing is not None:
                if existing.job_id == earlier.job_id and existing.status == JobStatus.queued and existing.percent == 0:
                    # Accepted before, but no worker may know of it (the queue was down):
                    # put in line again (the queue ignores a job it has).
                    await self.queue.put(QueuedJob(earlier.job_id, cv_id, self.settings.tenant))
                return _Admission(earlier, existing)
            # Failed, cancelled or deleted since: a new attempt replaces its record.
            await self._blocking(self.uploads.put, record, data)
        if queue:
            await self.queue.put(QueuedJob(record.job_id, cv_id, self.settings.tenant))
        else:
            task = asyncio.ensure_future(self._process_now(record, data))
            self._processing[cv_id] = task
            task.add_done_callback(lambda t: self._sync_finished(cv_id, t))
        return _Admission(record)

    async def _existing_upload(self, cv_id: str, record: UploadRecord) -> UploadProgress | None:
        """The state of the earlier upload ``record`` if it still stands, else None (a new attempt)."""
        job = await self._job(record.job_id)
        if job is None:
            # Accepted, its job not in line yet (or lost with the progress actor: the
            # recovery round puts it back); or stored all the same.
            if await self._blocking(self.store.has_cv, cv_id):
                return UploadProgress(cv_id=cv_id, job_id=record.job_id, status=JobStatus.succeeded,
                                      step=UploadStep.done, percent=100.0, created_at=record.accepted_at)
            return UploadProgress(
                cv_id=cv_id, job_id=record.job_id, status=JobStatus.queued, step=UploadStep.queued,
                percent=0.0, created_at=record.accepted_at,
            )
        if not job.status.is_terminal():
            return UploadProgress.of(cv_id, job)
        if job.status == JobStatus.succeeded and await self._blocking(self.store.has_cv, cv_id):
            return UploadProgress.of(cv_id, job)
        return None

    async def _upload_step(self, cv_id: str) -> UploadStep:
        try:
            return (await self.upload_progress(cv_id)).step
        except UnknownDocument:
            return UploadStep.queued  # deleted meanwhile; the upload in flight stores it again

    async def _wait_for_upload(self, cv_id: str, job_id: str | None) -> None:
        """Wait until another request's upload of ``cv_id`` ends; raise its failure."""
        deadline = time.monotonic() + DUPLICATE_WAIT_S
        delay = 0.05
        while time.monotonic() < deadline:
            job = await self._job(job_id) if job_id else None
            if job is not None and job.status.is_terminal():
                if job.status != JobStatus.succeeded:
                    raise ProcessingError(
                        job.error_stage or Stage.store, job.error_code or ErrorCode.internal_error,
                        job.error or "the upload failed",
                    )
                return
            if job is None and await self._blocking(self.store.has_cv, cv_id):
                return
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)
        raise ServiceUnavailable(f"upload {cv_id} is still being processed elsewhere")

    async def _process_now(self, record: UploadRecord, data: bytes) -> CVPublic:
        """A synchronous upload: the pipeline deployment's run of it, waited for."""
        try:
            return await self.pipeline.process.remote(record, data, self.settings.tenant)
        except (ProcessingError, UnknownDocument):
            raise  # the document's own failure, or deleted while processed
        except (RayError, RayServeException) as e:
            # The pipeline replica died or is gone, or it put the upload back in line: the
            # upload stays accepted (its blob) and is processed in the background (the
            # recovery takes back the job of a dead replica once its lease runs out).
            logger.error("upload %s: not processed now: %s", record.cv_id, type(e).__name__)
            raise ServiceUnavailable(
                "processing is delayed; the upload is kept and will be processed: "
                f"follow /api/cv-upload-progress/{record.cv_id}"
            ) from e

    def _sync_finished(self, cv_id: str, task: asyncio.Task[CVPublic]) -> None:
        if self._processing.get(cv_id) is task:
            del self._processing[cv_id]
        if not task.cancelled() and task.exception() is not None:
            # Retrieved here so a failure (already reported to the progress actor) that
            # no request awaited is not logged again by asyncio as "never retrieved".
            # The pipeline replica logged the failure (with its stage).
            logger.debug("upload %s failed: %s", cv_id, getattr(task.exception(), "code", "error"))

    async def recover_uploads(self, *, stale_after: timedelta | None = None, limit: int = 200) -> int:
        """Put back in line the uploads nobody is processing, every tenant's.

        Two kinds: jobs whose lease ran out, no step or heartbeat for ``stale_after``
        (default: the lease; the replica processing them died; one tried ``max_attempts``
        times fails as poison instead; ``requeue_stale`` hands each to one caller, so API replicas
        running this side by side do not both act), and accepted uploads older than
        ``stale_after`` whose job the progress actor never got (their replica died before
        putting them in line, or the actor lost them before writing them).

        Returns:
            How many uploads were put back in line.
        """
        stale_after = stale_after or timedelta(seconds=self.settings.upload.lease_s)
        requeued: list[str] = await self.progress.acall(
            "requeue_stale", "upload", stale_after.total_seconds(), limit=limit, max_attempts=self.settings.upload.max_attempts
        )
        orphans: list[QueuedJob] = []
        for tenant in await self._blocking(list_tenants, self.settings.data_dir, self.settings.store.storage_options):
            view = await self.for_tenant(tenant)
            candidates = await self._blocking(unstored_uploads, view.store, view.blobs, self._clock() - stale_after, limit)
            known = set(await self.progress.acall("known", [job_id for job_id, _ in candidates])) if candidates else set()
            orphans += [QueuedJob(job_id, cv_id, tenant) for job_id, cv_id in candidates if job_id not in known]
        if orphans:
            logger.warning("%d accepted uploads had no job; putting them in line", len(orphans))
            await self.progress.acall("enqueue", "upload", orphans)
        return len(requeued) + len(orphans)

    # --------------------------------------------------------------- CV reads

    async def upload_progress(self, cv_id: str) -> UploadProgress:
        """Where the latest upload of ``cv_id`` is.

        Raises:
            UnknownDocument: no upload of these bytes and no stored CV with this id.
        """
        found = await self._blocking(read_upload, self.blobs, checked_id(cv_id, "cv_id"))
        if found is not None:
            record = found[0]
            job = await self._job(record.job_id)
            if job is None:
                state = await self._existing_upload(cv_id, record)
                assert state is not None  # with no job, an upload is queued or stored
                return state
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
        record = await self._blocking(self.store.get_cv, checked_id(cv_id, "cv_id"))
        if record is None:
            raise UnknownDocument(f"no CV with id {cv_id!r}")
        return record.to_public()

    async def delete_cv(self, cv_id: str) -> Deleted:
        """Erase a CV: row, vectors, raw bytes, match results, upload jobs, and their bytes on disk.

        Returns once they are gone (``storage.erasure``: after ``store.erase_grace_s`` at
        least). Match jobs that scored the CV keep their progress job (it names a JD).

        Raises:
            UnknownDocument: nothing was stored under ``cv_id``.
            ServiceUnavailable: something could not be removed or erased yet; the CV no
                longer reads back, and deleting again finishes the job.
        """
        checked_id(cv_id, "cv_id")
        # The upload first: a worker processing it checks for it after writing the row (a delete wins).
        upload = await self._blocking(self.blobs.delete, "upload", cv_id)
        # The tables and the jobs are erased side by side: each waits out the erase grace.
        stored, forgotten = await asyncio.gather(
            self._blocking(self.store.delete_cv, cv_id), self._forget_uploads(cv_id), return_exceptions=True
        )
        for outcome in (stored, forgotten):
            if isinstance(outcome, ErasureError):
                raise ServiceUnavailable("the CV is deleted but not yet erased from disk; delete it again") from outcome
            if isinstance(outcome, BaseException):
                raise outcome
        if not (upload or stored or forgotten):
            raise UnknownDocument(f"no CV with id {cv_id!r}")
        logger.info("CV %s deleted and erased", cv_id)
        return Deleted(cv_id=cv_id)

    async def _forget_uploads(self, cv_id: str) -> int:
        """Forget every upload attempt's job of ``cv_id`` (the record names only the latest)."""
        try:
            job_ids: list[str] = await self.progress.acall("jobs_of_cv", cv_id, self.settings.tenant)
            return await self.progress.acall("forget", job_ids) if job_ids else 0
        except (ProgressError, RayError) as e:
            logger.error("CV %s: upload jobs not forgotten: %s", cv_id, type(e).__name__)
            raise ServiceUnavailable("the CV's upload progress could not be removed; try again") from e

    # -------------------------------------------------------------------- JDs

    async def upload_jd(self, data: bytes, *, filename: str | None, content_type: str | None) -> JDAccepted:
        """Standardize, embed and store one JD (text as UTF-8 bytes, or a file).

        The steps of ``cvmatch_ray.process`` on the model deployments, as for a CV upload.

        Raises:
            ProcessingError: the document is refused.
        """
        if not data.strip():
            raise ProcessingError(Stage.extract, ErrorCode.empty_document, "the job description is empty")
        if len(data) > self.settings.max_upload_bytes:
            raise ProcessingError(Stage.read, ErrorCode.document_too_large, "the job description is too large")
        jd_id = document_id(data)
        existing = await self._blocking(self.store.get_jd, jd_id)
        if existing is not None:
            return JDAccepted(jd_id=jd_id, profile=existing.profile, duplicate=True)
        extracted = unwrap(await self.extractor.extract.remote(RawDocument(data, "jd", filename, doc_id=jd_id)))
        standardized = unwrap(await self.standardizer.standardize.remote(extracted))
        [standardized] = await self._blocking(features_batch, [standardized])
        record = unwrap(await self.embedder.embed.remote(standardized)).record
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
        record = await self._blocking(self.store.get_jd, checked_id(jd_id, "jd_id"))
        if record is None:
            raise UnknownDocument(f"no JD with id {jd_id!r}")
        return record.to_public()

    # ----------------------------------------------------------------- health

    async def health(self) -> Health:
        """What this replica fronts, once the progress actor answers (no storage read).

        Raises:
            ServiceUnavailable: the progress actor cannot be reached or got again.
        """
        try:
            await asyncio.wait_for(self.progress.acall("data_dir"), HEALTH_TIMEOUT_S)
        except (ProgressError, RayError, TimeoutError) as e:
            raise ServiceUnavailable(f"the progress tracker is unavailable ({type(e).__name__})") from e
        return Health(
            version=__version__,
            standardizer=self.standardizer_backend,
            embedding_model=self.embedding_model,
            embedding_dim=self.store.dim,
            auth=bool(self.settings.api_keys),
        )


def _inspect(data: bytes) -> str:
    """The ``cv_id`` of an upload; refuses types that are not CVs (before any parsing)."""
    document = RawDocument(data, "cv")
    refused = sniff(document)
    if refused is not None:
        raise refused.error()
    return document.doc_id

