"""Accepting uploads: their blobs written in group commits (one durability barrier for many
uploads), their jobs put in line together (one call to the progress actor for many).

Uploads that arrive while a batch is being written wait in line; the next batch is written in
one thread hop and made durable by one barrier (``BlobStore.sync``). A blob is created only if
absent (atomically), so two replicas accepting the same bytes at once store one record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ray.exceptions import RayError

from cvmatch_ray.progress import ProgressClient, ProgressError, QueuedJob
from cvmatch_ray.serve.errors import ServiceUnavailable
from cvmatch_ray.serve.upload_worker import UploadRecord, read_upload
from cvmatch_ray.storage.blobs import BlobStore, BlobStoreError

logger = logging.getLogger(__name__)


class UploadWriter:
    """Writes upload blobs for one API replica, batching the uploads that arrive together."""

    def __init__(self, blobs: BlobStore, blocking: Callable[..., Awaitable[Any]]) -> None:
        """Args:
        blobs: where upload records and raw bytes are kept.
        blocking: runs a blocking call off the event loop (the service's thread pool).
        """
        self.blobs = blobs
        self._blocking = blocking
        self._to_store: list[tuple[UploadRecord, bytes, asyncio.Future[UploadRecord | None]]] = []
        self._storing: asyncio.Task[None] | None = None

    def put(self, record: UploadRecord, data: bytes, *, only_if_absent: bool = False, sync: bool = True) -> bool:
        """Store the upload's blob (with ``only_if_absent``, unless one exists: False then)."""
        try:
            if only_if_absent:
                return self.blobs.create("upload", record.cv_id, record.pack(data), sync=sync)
            self.blobs.put("upload", record.cv_id, record.pack(data), sync=sync)
            return True
        except BlobStoreError as e:
            logger.error("upload %s: not stored: %s", record.cv_id, e.__cause__ or e)
            raise ServiceUnavailable("the upload could not be stored; try again") from e

    def _put_unless_present(self, record: UploadRecord, data: bytes) -> UploadRecord | None:
        """The record of an earlier upload of these bytes, or None after writing ``record``
        (not yet durable: ``_put_batch`` syncs what it wrote).

        The blob is created only if absent, atomically (``BlobStore.create``): of two
        replicas accepting the same bytes at once, one stores its record and the other
        gets that record back.
        """
        for _ in range(3):
            if self.put(record, data, only_if_absent=True, sync=False):
                return None
            found = read_upload(self.blobs, record.cv_id)
            if found is not None:
                return found[0]
            if self.blobs.exists("upload", record.cv_id):
                break  # there, but unreadable: replaced below
            # Deleted between the two calls: try again.
        self.put(record, data, sync=False)
        return None

    async def store_unless_present(self, record: UploadRecord, data: bytes) -> UploadRecord | None:
        """The record of an earlier upload of these bytes, or None once ``record`` is durable;
        written in a group commit with the uploads that arrive meanwhile.

        Uploads wait in line while a batch is being written; the next batch is written
        in one thread hop and made durable by one barrier (``BlobStore.sync``) for all.
        """
        future: asyncio.Future[UploadRecord | None] = asyncio.get_running_loop().create_future()
        self._to_store.append((record, data, future))
        if self._storing is None:
            self._storing = asyncio.get_running_loop().create_task(self._store_batches())
        return await future

    async def _store_batches(self) -> None:
        try:
            while self._to_store:
                batch, self._to_store = self._to_store, []
                futures = [future for _, _, future in batch]
                try:
                    outcomes = await self._blocking(self._put_batch, [(r, d) for r, d, _ in batch])
                except asyncio.CancelledError:
                    for future in futures:
                        future.cancel()
                    raise
                except Exception as e:  # the whole batch fails with it; no request is left waiting
                    outcomes = [e] * len(batch)
                for future, outcome in zip(futures, outcomes, strict=True):
                    if future.done():
                        continue  # its request went away
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._storing = None

    def _put_batch(self, uploads: list[tuple[UploadRecord, bytes]]) -> list[UploadRecord | ServiceUnavailable | None]:
        """``_put_unless_present`` for each upload, then one durability barrier for all.

        Returns, per upload: None (stored), the earlier upload's record, or the error.

        Raises:
            ServiceUnavailable: the barrier failed; the blobs this call wrote are removed.
        """
        outcomes: list[UploadRecord | ServiceUnavailable | None] = []
        for record, data in uploads:
            try:
                outcomes.append(self._put_unless_present(record, data))
            except ServiceUnavailable as e:
                outcomes.append(e)
        written = [record.cv_id for (record, _), outcome in zip(uploads, outcomes, strict=True) if outcome is None]
        try:
            self.blobs.sync(self.blobs.path("upload", cv_id) for cv_id in written)
        except BlobStoreError as e:
            logger.error("%d uploads not made durable: %s", len(written), e.__cause__ or e)
            for cv_id in written:
                try:
                    self.blobs.delete("upload", cv_id)
                except BlobStoreError:
                    pass  # unacknowledged; the recovery round requeues it if it lasted
            raise ServiceUnavailable("the upload could not be stored; try again") from e
        return outcomes


class UploadQueueSender:
    """Puts accepted uploads' jobs in line for one API replica, together when they arrive together.

    A job goes out at once when no call is in flight; jobs accepted meanwhile share the
    next call. The caller learns whether its job got there: an upload is acknowledged only
    once a worker can see it.
    """

    def __init__(self, progress: ProgressClient) -> None:
        self.progress = progress
        self._to_send: list[tuple[QueuedJob, asyncio.Future[None]]] = []
        self._sending: asyncio.Task[None] | None = None

    def put(self, job: QueuedJob) -> asyncio.Future[None]:
        """Put an accepted upload's job in line (the queue ignores a job it has).

        Returns:
            Done once the progress actor has the job; raises ``ServiceUnavailable`` when it
            could not be reached.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._to_send.append((job, done))
        if self._sending is None:
            self._sending = asyncio.get_running_loop().create_task(self._send())
        return done

    async def _send(self) -> None:
        try:
            await asyncio.sleep(0)  # uploads admitted in this turn of the loop go together
            while self._to_send:
                batch, self._to_send = self._to_send, []
                try:
                    await self.progress.acall("enqueue", "upload", [job for job, _ in batch])
                except (ProgressError, RayError) as e:
                    # Their blobs are durable: a recovery round that reaches the actor puts
                    # them in line, and sending the same file again joins them.
                    logger.error("%d accepted uploads not put in line: %s", len(batch), type(e).__name__)
                    error = ServiceUnavailable(f"the upload queue is unavailable ({type(e).__name__}); try again")
                    for _, done in batch:
                        done.set_exception(error)
                else:
                    for _, done in batch:
                        done.set_result(None)
        finally:
            self._sending = None
