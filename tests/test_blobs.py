"""The blob store: atomic, durable write-once files for raw uploads, JDs and job options."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from cvmatch_ray.storage.blobs import BlobStore


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(str(tmp_path))


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_put_get_replace_delete(blobs: BlobStore, tmp_path: Path) -> None:
    assert blobs.get("upload", "abc123") is None
    blobs.put("upload", "abc123", b"first")
    blobs.put("upload", "abc123", b"second")
    assert blobs.get("upload", "abc123") == b"second"
    assert blobs.get("upload", "abc123", limit=3) == b"sec"
    assert blobs.ids("upload") == ["abc123"] and blobs.ids("jd") == []
    assert blobs.delete("upload", "abc123") and not blobs.delete("upload", "abc123")
    assert _files(tmp_path) == []


def test_blobs_are_readable_by_their_owner_only(blobs: BlobStore, tmp_path: Path) -> None:
    blobs.put("upload", "abc123", b"a CV")
    blobs.create("upload", "def456", b"another CV")
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "blobs").rglob("*") if p.is_file()}
    assert modes == {"abc123": 0o600, "def456": 0o600}


def test_create_stores_only_when_absent(blobs: BlobStore, tmp_path: Path) -> None:
    assert blobs.create("upload", "abc123", b"first")
    assert not blobs.create("upload", "abc123", b"second")
    assert blobs.get("upload", "abc123") == b"first"
    # No temp file is left behind by the losing write.
    assert _files(tmp_path) == ["blobs/upload/ab/abc123"]


def test_concurrent_creates_have_one_winner(blobs: BlobStore) -> None:
    n = 8
    won: list[int] = []
    start = threading.Barrier(n)

    def create(i: int) -> None:
        start.wait()
        if blobs.create("upload", "race01", f"writer {i}".encode() * 1000):
            won.append(i)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert blobs.get("upload", "race01") == f"writer {won[0]}".encode() * 1000


@pytest.mark.parametrize("blob_id", ["../etc", "a/b/c", "", "x", "a" * 200, "dot.name"])
def test_ids_cannot_name_other_paths(blobs: BlobStore, blob_id: str) -> None:
    with pytest.raises(ValueError):
        blobs.put("upload", blob_id, b"data")
    with pytest.raises(ValueError):
        blobs.create("upload", blob_id, b"data")


def test_unknown_kind_is_refused(blobs: BlobStore) -> None:
    with pytest.raises(ValueError):
        blobs.put("cv", "abc123", b"data")  # type: ignore[arg-type]


def test_a_failed_write_leaves_nothing(blobs: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    from cvmatch_ray.storage.blobs import BlobStoreError

    with pytest.raises(BlobStoreError):
        blobs.create("upload", "abc123", b"data")
    assert _files(tmp_path) == []


@pytest.mark.parametrize("syncfs", [True, False], ids=["syncfs", "fsync-each"])
def test_unsynced_writes_become_durable_in_one_barrier(
    blobs: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syncfs: bool
) -> None:
    from cvmatch_ray.storage import blobs as blobs_module

    if not syncfs:
        monkeypatch.setattr(blobs_module, "_SYNCFS", None)
    fsynced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsynced.append(fd), real_fsync(fd))[1])
    assert blobs.create("upload", "abc123", b"one", sync=False)
    blobs.put("upload", "def456", b"two", sync=False)
    assert not blobs.create("upload", "abc123", b"three", sync=False)
    assert fsynced == []  # nothing synced per write...
    blobs.sync([blobs.path("upload", "abc123"), blobs.path("upload", "def456")])
    # ... and one barrier for both: syncfs, or each file and each folder.
    assert len(fsynced) == (0 if syncfs and blobs_module._SYNCFS is not None else 4)
    assert (blobs.get("upload", "abc123"), blobs.get("upload", "def456")) == (b"one", b"two")
    assert _files(tmp_path) == ["blobs/upload/ab/abc123", "blobs/upload/de/def456"]
    blobs.sync([])  # nothing to do


def test_a_failed_barrier_is_a_blob_store_error(blobs: BlobStore, tmp_path: Path) -> None:
    from cvmatch_ray.storage.blobs import BlobStoreError

    with pytest.raises(BlobStoreError):
        blobs.sync([str(tmp_path / "blobs" / "upload" / "zz" / "zz_missing")])
