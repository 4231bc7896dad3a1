"""Accepting uploads: the blobs of uploads that arrive together share one durability barrier."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cvmatch_ray.config import Settings
from cvmatch_ray.ids import document_id
from cvmatch_ray.serve.errors import ServiceUnavailable
from cvmatch_ray.serve.service import APIService
from cvmatch_ray.serve.upload_worker import UploadRecord, new_upload_job_id, read_upload
from cvmatch_ray.storage.blobs import BlobStore, BlobStoreError
from cvmatch_ray.storage.tables import Store


class CountingBlobs(BlobStore):
    """The real blob store, recording each barrier's paths (and failing them on demand)."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.barriers: list[list[str]] = []
        self.fail = False

    def sync(self, paths: Iterable[str]) -> None:
        paths = list(paths)
        self.barriers.append(paths)
        if self.fail:
            raise BlobStoreError("disk gone")
        super().sync(paths)


@pytest.fixture
def service(tmp_path: Path) -> APIService:
    # Only the blob path is exercised: no deployment or progress actor is called.
    return APIService(
        settings=Settings(data_dir=str(tmp_path)),
        store=Store(str(tmp_path), dim=8),
        blobs=CountingBlobs(str(tmp_path)),
        progress=None,
        extractor=None,
        standardizer=None,
        embedder=None,
        pipeline=None,
        embedding_model="unused",
        standardizer_backend="rules",
    )


def _upload(data: bytes) -> UploadRecord:
    cv_id = document_id(data)
    return UploadRecord(cv_id=cv_id, job_id=new_upload_job_id(), size=len(data), accepted_at=datetime.now(UTC))


def _blob_files(root: Path) -> list[Path]:
    return [p for p in (root / "blobs").rglob("*") if p.is_file()]


def test_uploads_arriving_together_share_barriers(service: APIService, tmp_path: Path) -> None:
    blobs = service.blobs
    assert isinstance(blobs, CountingBlobs)
    datas = [f"CV number {i}\n".encode() * 50 for i in range(24)]
    records = [_upload(d) for d in datas]
    twin = _upload(datas[0])  # the same bytes again, in the same burst

    async def accept() -> list[UploadRecord | None]:
        return await asyncio.gather(
            *(service.uploads.store_unless_present(r, d) for r, d in zip(records, datas, strict=True)),
            service.uploads.store_unless_present(twin, datas[0]),
        )

    outcomes = asyncio.run(accept())
    # Every new upload was stored; the twin got the first upload's record back.
    assert outcomes[:-1] == [None] * len(records)
    assert outcomes[-1] is not None and outcomes[-1].job_id == records[0].job_id
    for record, data in zip(records, datas, strict=True):
        found = read_upload(blobs, record.cv_id, with_data=True)
        assert found is not None and found == (record, data)
    # Fewer barriers than uploads, and each stored blob was behind exactly one.
    assert 1 <= len(blobs.barriers) < len(records)
    synced = sorted(p for paths in blobs.barriers for p in paths)
    assert synced == sorted(blobs.path("upload", r.cv_id) for r in records)
    assert len(_blob_files(tmp_path)) == len(records)  # and no temp file left


def test_a_failed_barrier_fails_its_batch_and_leaves_nothing(service: APIService, tmp_path: Path) -> None:
    blobs = service.blobs
    assert isinstance(blobs, CountingBlobs)
    datas = [f"CV {i}\n".encode() * 50 for i in range(6)]

    async def accept() -> list[UploadRecord | BaseException | None]:
        return await asyncio.gather(
            *(service.uploads.store_unless_present(_upload(d), d) for d in datas), return_exceptions=True
        )

    blobs.fail = True
    outcomes = asyncio.run(accept())
    assert all(isinstance(o, ServiceUnavailable) for o in outcomes), outcomes
    assert _blob_files(tmp_path) == []  # unacknowledged: removed

    # The store recovers with the disk: the same uploads are accepted afresh.
    blobs.fail = False
    assert asyncio.run(accept()) == [None] * len(datas)
    assert len(_blob_files(tmp_path)) == len(datas)
