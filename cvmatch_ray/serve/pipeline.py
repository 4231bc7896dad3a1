"""The upload pipeline deployment: an accepted upload's bytes -> a stored CV.

The ingress only accepts uploads (their bytes durable on disk, see ``service.py``) and
answers; everything after that runs here, in a replica of its own that lowers its CPU
priority (``priority.py``): extract -> standardize -> embed on the model deployments, the
blinded section texts and the LanceDB row built here, each step reported to the progress
actor, and the rows of concurrent uploads written in one commit (``@serve.batch``). So an
upload's CPU work never runs on the event loop that accepts the next upload.

A failed upload keeps its progress record (so the client can read why) and nothing else:
the raw bytes are removed and no CV row is written.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from ray import serve
from ray.exceptions import RayError
from ray.serve.exceptions import RayServeException
from ray.serve.handle import DeploymentHandle

from cvmatch_ray.config import Settings
from cvmatch_ray.embed import EmptyDocumentError
from cvmatch_ray.ingest import IngestError, Prepared
from cvmatch_ray.priority import lower_priority
from cvmatch_ray.progress import ProgressError, UploadStep, get_progress_actor
from cvmatch_ray.schemas import CVPublic
from cvmatch_ray.serve.blobs import BlobStore, BlobStoreError
from cvmatch_ray.store import CVRecord, Store

logger = logging.getLogger(__name__)

UPLOAD_PIPELINE = "UploadPipeline"
#: Code of failures that are the server's fault (a replica died, storage failed).
INTERNAL_ERROR = "internal_error"


class UploadRecord(BaseModel):
    """The durable note of an accepted upload, written next to its raw bytes."""

    cv_id: str
    job_id: str
    filename: str | None = None
    content_type: str | None = None
    size: int
    accepted_at: datetime


def failure_text(err: IngestError) -> str:
    """How a failed upload's error is recorded in its progress job: ``"code: message"``
    (enough for a later duplicate request to rebuild the error and its status)."""
    return f"{err.code}: {err.message}"


async def report_progress(call: Any, *args: Any, **kwargs: Any) -> None:
    """``await call.remote(...)`` on the progress actor; a progress outage slows nobody's
    upload down (it is logged, not raised)."""
    try:
        await call.remote(*args, **kwargs)
    except (ProgressError, RayError) as e:
        logger.warning("progress report %s failed: %s", args[0] if args else "", type(e).__name__)


def section_texts(prepared: Prepared) -> dict[str, str]:
    """The blinded section texts to embed; a CV with nothing to embed is refused."""
    try:
        return prepared.section_texts()
    except EmptyDocumentError as e:
        raise IngestError("embed", "empty_document", str(e)) from e


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
        lower_priority(settings.background_niceness)
        info: dict[str, Any] = await embedder.info.remote()
        self.store = Store(settings.data_dir, dim=int(info["dim"]))
        self.blobs = BlobStore(settings.data_dir)
        # get_progress_actor blocks on a name lookup (and on the actor's first start).
        self.progress = await asyncio.to_thread(get_progress_actor, settings)
        self.extractor = extractor
        self.standardizer = standardizer
        self.embedder = embedder

    async def _report(self, method: str, *args: Any, **kwargs: Any) -> None:
        await report_progress(getattr(self.progress, method), *args, **kwargs)

    async def process(self, record: UploadRecord, data: bytes) -> CVPublic:
        """Extract, standardize, embed and store the upload ``record`` of ``data``.

        Returns:
            The stored CV, as the API shows it.

        Raises:
            IngestError: the document is refused (its ``http_status`` says why), or stage
                ``store`` with code ``internal_error`` when a backend failed; either way the
                failure is reported to the upload's progress job first.
        """
        cv_id, job_id = record.cv_id, record.job_id
        try:
            await self._report("set_step", job_id, UploadStep.extracting)
            # No filename into extraction: error messages then carry no personal names.
            text, flags, extractor = await self.extractor.extract.remote(data, None)
            await self._report("set_step", job_id, UploadStep.standardizing)
            profile, provenance = await self.standardizer.standardize.remote(text, "cv")
            prepared = Prepared(
                cv_id, "cv", record.filename, text, profile,
                provenance.model_copy(update={"extractor": extractor}), list(flags),
            )
            sections = section_texts(prepared)
            await self._report("set_step", job_id, UploadStep.embedding)
            vectors = await self.embedder.embed_sections.remote(sections)
            cv = prepared.to_record(vectors)
            assert isinstance(cv, CVRecord)
            # Stamped here so the synchronous answer carries the time the row will have.
            cv.created_at = datetime.now(UTC)
            await self._report("set_step", job_id, UploadStep.storing, cv.stats)
            await self._write_cv(cv)
        except IngestError as e:
            await self._fail(record, e)
            raise
        except (RayError, RayServeException, OSError, ValueError, RuntimeError) as e:
            # Not the document's fault: report it as ours, keep the class name only (the
            # message of a backend error may quote document content).
            err = IngestError("store", INTERNAL_ERROR, f"processing failed ({type(e).__name__})", http_status=500)
            logger.error("upload %s: %s", cv_id, type(e).__name__)
            await self._fail(record, err)
            raise err from e
        await self._report("set_step", job_id, UploadStep.done, cv.stats)
        logger.info("upload %s stored (%d skills)", cv_id, cv.stats.skills_count)
        return cv.to_public()

    async def _fail(self, record: UploadRecord, err: IngestError) -> None:
        cv_id = record.cv_id
        await self._report("set_step", record.job_id, UploadStep.failed, error=failure_text(err))
        # The failure stays readable through the progress job, which the upload record
        # keeps pointing at; the bytes and the client's file name are not kept.
        anonymous = record.model_copy(update={"filename": None, "content_type": None})

        def discard() -> None:
            self.blobs.delete("cv", cv_id)
            self.blobs.put("upload", cv_id, anonymous.model_dump_json().encode())

        try:
            await asyncio.to_thread(discard)
        except BlobStoreError as e:
            logger.warning("upload %s: a failed upload's bytes not removed: %s", cv_id, e.__cause__ or e)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.02)
    async def _write_cv(self, records: list[CVRecord]) -> list[None]:
        # One LanceDB commit for every upload that reached this point together: commits,
        # not rows, are what cost time and conflict.
        await asyncio.to_thread(self.store.upsert_cvs, records)
        return [None] * len(records)
