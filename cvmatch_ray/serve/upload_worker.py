"""The upload pipeline deployment: an accepted upload's bytes -> a stored CV.

The ingress only accepts uploads (record and bytes durable in one blob, see
``service.py``) and answers; everything after that runs here, in a replica of its own
that lowers its CPU priority (``priority.py``): the steps of ``cvmatch_ray.process`` on
the model deployments (extract, standardize, embed) and here (the scorer's features),
each step reported to the progress actor, and the rows of concurrent uploads written in
one commit (``@serve.batch``). So an upload's CPU work never runs on the event loop that accepts the
next upload.

Work reaches a replica two ways:

- **pulled** (background uploads): the ingress enqueues the upload's job on the progress
  actor; every replica keeps up to ``concurrency`` uploads in hand, claiming more with a
  long poll (``claim_queued``) and reading their bytes from the blob. The ingress makes no
  call per upload to this deployment, and replicas share the work by taking it.
- **called** (``background_processing=false``): :meth:`UploadPipelineDeployment.process`
  with the record and the bytes, the caller waiting for the stored CV.

A failed upload keeps its progress record (so the client can read why) and its upload
record, but not its bytes; no CV row is written. An upload is processed in its tenant's
data (``Settings.tenant_dir``): the tenant its job names, or the caller's.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError
from ray import serve
from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException
from ray.serve.handle import DeploymentHandle

from cvmatch_ray import metrics
from cvmatch_ray.config import DEFAULT_TENANT, Settings
from cvmatch_ray.errors import ErrorCode, ProcessingError, Stage, UnknownDocument
from cvmatch_ray.logs import route_app_logs
from cvmatch_ray.priority import lower_priority
from cvmatch_ray.process import RawDocument, features_batch, unwrap
from cvmatch_ray.progress import JobProgress, JobStatus, ProgressClient, ProgressError, QueuedJob, UploadStep
from cvmatch_ray.schemas import CVPublic
from cvmatch_ray.serve.errors import ServiceUnavailable
from cvmatch_ray.storage.blobs import BlobStore, BlobStoreError
from cvmatch_ray.storage.records import CVRecord
from cvmatch_ray.storage.tables import Store

logger = logging.getLogger(__name__)

UPLOAD_PIPELINE = "UploadPipeline"
#: How long one claim waits on the progress actor for new uploads (a long poll).
CLAIM_WAIT_S = 5.0
#: The longest a new upload waits for a burst of uploads to settle (``settle_s``).
CLAIM_MAX_DELAY_S = 2.0
#: The most an upload record takes at the head of its blob (the file name is <= 255 chars).
RECORD_HEAD_BYTES = 4096


class UploadRecord(BaseModel):
    """The durable note of an accepted upload, stored at the head of its blob.

    The blob is the record as one line of JSON, a newline, then the raw bytes (absent once
    the upload failed): one file, so accepting an upload costs one durable write.
    """

    cv_id: str
    job_id: str
    filename: str | None = None
    content_type: str | None = None
    size: int
    accepted_at: datetime

    def pack(self, data: bytes | None = None) -> bytes:
        """The blob of this record followed by ``data``."""
        return self.model_dump_json().encode() + b"\n" + (data or b"")

    @classmethod
    def unpack(cls, blob: bytes) -> tuple[UploadRecord, bytes | None] | None:
        """``(record, raw bytes or None)`` of a blob (or of its head), None if unreadable."""
        head, newline, data = blob.partition(b"\n")
        try:
            record = cls.model_validate_json(head)
        except ValidationError:
            return None
        return record, (data if newline and len(data) == record.size else None)


def read_upload(blobs: BlobStore, cv_id: str, *, with_data: bool = False) -> tuple[UploadRecord, bytes | None] | None:
    """The upload record of ``cv_id`` and, with ``with_data``, its raw bytes; None if none."""
    blob = blobs.get("upload", cv_id, limit=None if with_data else RECORD_HEAD_BYTES)
    if blob is None:
        return None
    unpacked = UploadRecord.unpack(blob)
    if unpacked is None:
        logger.warning("upload record of %s is unreadable; treating the upload as new", cv_id)
    return unpacked


def unstored_uploads(store: Store, blobs: BlobStore, accepted_before: datetime, limit: int) -> list[tuple[str, str]]:
    """(job id, cv id) of uploads accepted before ``accepted_before`` whose CV is not stored."""
    stored = set(store.list_cv_ids())
    out: list[tuple[str, str]] = []
    for cv_id in blobs.ids("upload"):
        if cv_id in stored:
            continue
        found = read_upload(blobs, cv_id)
        if found is not None and found[0].accepted_at <= accepted_before:
            out.append((found[0].job_id, cv_id))
            if len(out) >= limit:
                break
    return out


def new_upload_job_id() -> str:
    """A fresh progress job id for one upload attempt (the job names its CV in ``cv_id``)."""
    return f"upload_{uuid.uuid4().hex[:16]}"


#: Backoff before an upload that failed through no fault of its own is put back in line:
#: this, doubled per attempt, at most ``RETRY_BACKOFF_MAX_S``.
RETRY_BACKOFF_S = 1.0
RETRY_BACKOFF_MAX_S = 30.0


class _NotTheDocument(Exception):
    """Processing failed through no fault of the document's (its message: the cause's class)."""


class TenantData(NamedTuple):
    """Where one tenant's uploads are read from and its CVs written to."""

    store: Store
    blobs: BlobStore


#: The error an upload job ends with when its upload can no longer be processed.
LOST_UPLOAD = ProcessingError(Stage.store, ErrorCode.internal_error, "the upload was lost; upload the file again")




@serve.deployment(name=UPLOAD_PIPELINE, ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
class UploadPipelineDeployment:
    """Takes accepted uploads through every step to a stored CV, off the ingress."""

    async def __init__(
        self,
        settings: Settings,
        extractor: DeploymentHandle,
        standardizer: DeploymentHandle,
        embedder: DeploymentHandle,
    ) -> None:
        """Start the replica and its loop that claims queued uploads.

        Args:
            settings: the deployment's settings; ``settings.upload`` says how many queued
                uploads a replica processes at once and how long a burst of new uploads
                may settle before its processing starts.
            extractor: handle of the ``Extractor`` deployment.
            standardizer: handle of the ``Standardizer`` deployment.
            embedder: handle of the ``Embedder`` deployment.
        """
        route_app_logs()
        lower_priority(settings.background_niceness)
        info: dict[str, Any] = await embedder.info.remote()
        self._settings = settings
        self._dim = int(info["dim"])
        # Each tenant's store and blobs, by tenant, opened on its first upload here.
        self._tenants: dict[str, TenantData] = {}
        # Getting the actor blocks on a name lookup (and on the actor's first start).
        self.progress = await asyncio.to_thread(ProgressClient, settings)
        self.extractor = extractor
        self.standardizer = standardizer
        self.embedder = embedder
        self._concurrency = settings.upload.concurrency
        self._settle_s = settings.upload.settle_s
        self._lease_s = settings.upload.lease_s
        self._max_attempts = settings.upload.max_attempts
        # The queued uploads in hand, by job id: their leases are renewed while they run.
        self._claimed: dict[str, asyncio.Task[None]] = {}
        self._slot_freed = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._puller = loop.create_task(self._claim_forever())
        self._heart = loop.create_task(self._heartbeat_forever())

    def __del__(self) -> None:
        # Uploads in hand when the replica stops are put back in line by the ingress's
        # recovery once their progress has stood still (``requeue_stale``).
        for task in (getattr(self, "_puller", None), getattr(self, "_heart", None)):
            if task is not None:
                task.cancel()

    async def _tenant(self, tenant: str) -> TenantData:
        """Where ``tenant``'s uploads are read and its CVs written (``Settings.tenant_dir``)."""
        found = self._tenants.get(tenant)
        if found is None:
            settings = self._settings.model_copy(update={"tenant": tenant})
            store = await asyncio.to_thread(Store.open, settings.tenant_dir, settings.store, dim=self._dim)
            blobs = BlobStore(settings.tenant_dir, settings.store.storage_options)
            found = self._tenants.setdefault(tenant, TenantData(store, blobs))
        return found

    async def _report(self, method: str, *args: Any, **kwargs: Any) -> None:
        """A call on the progress actor; a progress outage slows no upload down (logged)."""
        try:
            await self.progress.acall(method, *args, **kwargs)
        except (ProgressError, RayError) as e:
            logger.warning("progress report %s failed: %s", args[0] if args else "", type(e).__name__)

    # ------------------------------------------------------------- pulled work

    async def _claim_forever(self) -> None:
        """Keep ``concurrency`` queued uploads in hand, claiming more as slots free up."""
        while True:
            free = self._concurrency - len(self._claimed)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                jobs: list[QueuedJob] = await self.progress.acall(
                    "claim_queued",
                    "upload", free, wait_s=CLAIM_WAIT_S, settle_s=self._settle_s, max_delay_s=CLAIM_MAX_DELAY_S
                )
            except (ProgressError, RayError) as e:
                logger.warning("claiming uploads failed: %s; retrying", type(e).__name__)
                await asyncio.sleep(1.0)
                continue
            for job in jobs:
                task = asyncio.create_task(self._process_claimed(QueuedJob(*job)))
                self._claimed[job.job_id] = task
                task.add_done_callback(lambda t, job_id=job.job_id: self._claim_finished(job_id, t))

    async def _heartbeat_forever(self) -> None:
        """Renew the leases of the uploads in hand, three times per lease."""
        while True:
            await asyncio.sleep(self._lease_s / 3)
            if self._claimed:
                await self._report("heartbeat", list(self._claimed))

    def _claim_finished(self, job_id: str, task: asyncio.Task[None]) -> None:
        self._claimed.pop(job_id, None)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            logger.error("upload worker failed: %s", type(task.exception()).__name__)

    async def _process_claimed(self, job: QueuedJob) -> None:
        """Process the upload a claimed job names, reading its bytes from its tenant's blob."""
        job_id = job.job_id
        where = await self._tenant(job.tenant)
        found = await asyncio.to_thread(read_upload, where.blobs, job.cv_id, with_data=True)
        if found is None or found[0].job_id != job_id or found[1] is None:
            # Deleted meanwhile, or a later attempt took over the record: nothing to do.
            logger.warning("upload job %s: its upload is gone; ending it", job_id)
            await self._report(
                "finish", job_id, JobStatus.failed, LOST_UPLOAD.message,
                error_code=LOST_UPLOAD.code.value, error_stage=LOST_UPLOAD.stage.value,
            )
            return
        try:
            await self._run(where, *found)
        except ProcessingError:
            pass  # reported to the job by _run()
        except UnknownDocument:
            pass  # deleted while it was processed: nothing left to report to
        except _NotTheDocument as e:
            # Tried again later, by this replica or another; its lease is held meanwhile.
            progress = await self.progress.acall("get", job_id)
            await asyncio.sleep(min(RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_S * 2 ** max(0, progress.attempts - 1)))
            await self._give_back(where, found[0], e)

    async def _give_back(self, where: TenantData, record: UploadRecord, cause: _NotTheDocument) -> JobProgress:
        """Put an upload that failed through no fault of its own back in line.

        Returns:
            Its job: queued again, or failed as ``poison_document`` once it was tried
            ``max_attempts`` times (its bytes are then dropped like any failed upload's).
        """
        job: JobProgress = await self.progress.acall(
            "release", "upload", record.job_id, max_attempts=self._max_attempts
        )
        if job.status == JobStatus.queued:
            logger.warning("upload %s: %s; put back in line (attempt %d)", record.cv_id, cause, job.attempts)
        elif job.error_code == ErrorCode.poison_document:
            logger.error("upload %s: %s; quarantined after %d attempts", record.cv_id, cause, job.attempts)
            metrics.record_failure(Stage.store, ErrorCode.poison_document)
            await self._drop_bytes(where, record)
        return job

    # -------------------------------------------------------------- the steps

    async def process(self, record: UploadRecord, data: bytes, tenant: str = DEFAULT_TENANT) -> CVPublic:
        """Extract, standardize, embed and store the upload ``record`` of ``data`` as ``tenant``'s CV.

        Called directly for a synchronous upload (its job is created here) and by the
        claim loop for a queued one. Bytes stored already (by a batch job, say) are not
        processed again: the job ends ``done`` with the stored CV.

        Returns:
            The stored CV, as the API shows it.

        Raises:
            ProcessingError: the document is refused (its ``code`` says why), or stage
                ``store`` with code ``internal_error`` when a backend failed; either way the
                failure is reported to the upload's progress job first.
        """
        # The job of a synchronous upload starts here, never queued for the claim loop.
        await self._report("create", record.job_id, "upload", 1, cv_id=record.cv_id, tenant=tenant, durable=False)
        where = await self._tenant(tenant)
        try:
            return await self._run(where, record, data)
        except _NotTheDocument as e:
            job = await self._give_back(where, record, e)
            if job.status == JobStatus.queued:
                raise ServiceUnavailable(
                    f"processing is delayed ({e}); the upload is kept and will be processed: "
                    f"follow /api/cv-upload-progress/{record.cv_id}"
                ) from None
            raise ProcessingError(Stage.store, ErrorCode.poison_document, job.error or "quarantined") from None

    async def _run(self, where: TenantData, record: UploadRecord, data: bytes) -> CVPublic:
        with metrics.timed("upload"):
            return await self._run_steps(where, record, data)

    async def _run_steps(self, where: TenantData, record: UploadRecord, data: bytes) -> CVPublic:
        cv_id, job_id = record.cv_id, record.job_id
        try:
            stored = await asyncio.to_thread(where.store.get_cv, cv_id)
            if stored is not None:
                await self.progress.report_step(job_id, UploadStep.done, stored.stats)
                return stored.to_public()
            # Intermediate steps are sent without waiting; the last one is waited for, so
            # that whoever reads the job after this returns sees it ended.
            self.progress.report_step(job_id, UploadStep.extracting)
            document = RawDocument(data, "cv", record.filename, doc_id=cv_id)
            extracted = unwrap(await self.extractor.extract.remote(document))
            self.progress.report_step(job_id, UploadStep.standardizing)
            standardized = unwrap(await self.standardizer.standardize.remote(extracted))
            [standardized] = await asyncio.to_thread(features_batch, [standardized])
            self.progress.report_step(job_id, UploadStep.embedding)
            cv = unwrap(await self.embedder.embed.remote(standardized)).record
            assert isinstance(cv, CVRecord)
            # Stamped here so the synchronous answer carries the time the row will have.
            cv.created_at = datetime.now(UTC)
            self.progress.report_step(job_id, UploadStep.storing, cv.stats)
            await self._write_cv((where.store, cv))
            await self._unless_deleted(where, record)
        except ProcessingError as e:
            await self._fail(where, record, e)
            raise
        except (RayError, RayServeException, OSError, RuntimeError) as e:
            # Not the document's fault (a replica died, a backend timed out, storage
            # failed): the upload stays accepted and is tried again. The class name only:
            # a backend's message may quote document content.
            raise _NotTheDocument(type(e).__name__) from e
        except ValueError as e:
            # A bug of ours this document trips: trying again would trip it again.
            err = ProcessingError(Stage.store, ErrorCode.internal_error, f"processing failed ({type(e).__name__})")
            logger.error("upload %s: %s", cv_id, type(e).__name__)
            await self._fail(where, record, err)
            raise err from e
        await self.progress.report_step(job_id, UploadStep.done, cv.stats)
        metrics.record_processed("upload")
        logger.info("upload %s stored (%d skills)", cv_id, cv.stats.skills_count)
        return cv.to_public()

    async def _fail(self, where: TenantData, record: UploadRecord, err: ProcessingError) -> None:
        metrics.record_failure(err.stage, err.code)
        logger.info("upload %s failed at %s: %s", record.cv_id, err.stage, err.code)
        await self.progress.report_step(record.job_id, UploadStep.failed, error=err)
        await self._drop_bytes(where, record)

    async def _drop_bytes(self, where: TenantData, record: UploadRecord) -> None:
        """Keep a failed upload's record without its bytes and the client's file name.

        The failure stays readable through the progress job, which the record points at.
        """
        anonymous = record.model_copy(update={"filename": None, "content_type": None})
        try:
            await asyncio.to_thread(where.blobs.put, "upload", record.cv_id, anonymous.pack())
        except BlobStoreError as e:
            logger.warning("upload %s: a failed upload's bytes not removed: %s", record.cv_id, e.__cause__ or e)

    async def _unless_deleted(self, where: TenantData, record: UploadRecord) -> None:
        """Take back a row just written for an upload that was deleted meanwhile.

        DELETE removes the upload's blob before its row, and this runs after the row is
        written: either DELETE's row removal comes after the write, or this sees the blob
        gone (or another attempt's record) and removes the row itself. A delete wins.

        Raises:
            UnknownDocument: the upload was deleted while it was processed.
        """
        found = await asyncio.to_thread(read_upload, where.blobs, record.cv_id)
        if found is not None and found[0].job_id == record.job_id:
            return
        await asyncio.to_thread(where.store.delete_cv, record.cv_id)
        logger.info("upload %s was deleted while processed; its row is removed", record.cv_id)
        raise UnknownDocument(f"CV {record.cv_id} was deleted while it was processed")

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.02)
    async def _write_cv(self, rows: list[tuple[Store, CVRecord]]) -> list[None]:
        # One LanceDB commit per tenant for every upload that reached this point together:
        # commits, not rows, are what cost time and conflict.
        by_store: dict[int, tuple[Store, list[CVRecord]]] = {}
        for store, record in rows:
            by_store.setdefault(id(store), (store, []))[1].append(record)
        for store, records in by_store.values():
            await asyncio.to_thread(store.upsert_cvs, records)
        return [None] * len(rows)
