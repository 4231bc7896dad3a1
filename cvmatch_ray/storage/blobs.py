"""Raw uploads as blob files under the data directory (a local folder or ``s3://``...).

An upload must be durable before the API answers 202; a Lance commit per upload would cost
tens of milliseconds and serialize concurrent uploads on the table's commit, while one file
per upload is one write + rename locally and one ``PUT`` on an object store.

Layout: ``<data_dir>/blobs/<kind>/<id[:2]>/<id>``. Kinds: ``upload`` an accepted CV upload
(its record, then its raw bytes, see ``serve.upload_worker.UploadRecord``), ``jd`` raw JDs,
``job`` a matching request's options. Writes are atomic and readable by the owner only.
Many blobs written with ``sync=False`` share one durability barrier, ``sync()``: on Linux
one ``syncfs`` of the blob area's filesystem, which also flushes whatever else is dirty
there (docs/performance.md has the figures).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import pyarrow as pa
import pyarrow.fs as pafs

from cvmatch_ray.storage.objectstore import filesystem

logger = logging.getLogger(__name__)

BlobKind = Literal["upload", "jd", "job"]
_KINDS: frozenset[str] = frozenset({"upload", "jd", "job"})
# Document ids are hex digests and job ids ``job_<hex>``; nothing else may name a file.
#: What ``link()`` fails with where the filesystem has no hard links.
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV})
_BLOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,127}")


def _find_syncfs() -> Callable[[int], int] | None:
    """libc's ``syncfs(fd)`` (Linux), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    fn = getattr(libc, "syncfs", None)
    if fn is not None:
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn


_SYNCFS = _find_syncfs()


class BlobStoreError(OSError):
    """A blob could not be written, read or removed."""


class BlobStore:
    """Write-once files keyed by ``(kind, id)`` under ``<root>/blobs``.

    Local roots get ``fsync`` and an atomic rename, so a blob that ``put`` returned for
    survives a crash of the process and of the machine. Object-store roots rely on the
    store's own guarantee (a completed ``PUT`` is durable and atomic).
    """

    def __init__(self, root: str, storage_options: Mapping[str, str] | None = None) -> None:
        """Open the blob area of the data directory ``root`` (created on first write).

        Args:
            root: the data directory: a local path or a URI that ``pyarrow.fs`` knows
                (``s3://bucket/prefix``, ``gs://``...).
            storage_options: the object store's options (``StoreSettings.storage_options``:
                the tables' endpoint and credentials, see ``storage.objectstore``).
        """
        self._fs, base = filesystem(root, storage_options)
        self._local = isinstance(self._fs, pafs.LocalFileSystem)
        self.root = base.rstrip("/") + "/blobs"

    def __repr__(self) -> str:
        return f"BlobStore(root={self.root!r})"

    def path(self, kind: BlobKind, blob_id: str) -> str:
        """Where blob ``(kind, blob_id)`` lives (ids are validated: no path tricks)."""
        if kind not in _KINDS:
            raise ValueError(f"unknown blob kind {kind!r}")
        if not isinstance(blob_id, str) or not _BLOB_ID.fullmatch(blob_id):
            raise ValueError(f"invalid {kind} id: {str(blob_id)[:80]!r}")
        return f"{self.root}/{kind}/{blob_id[:2]}/{blob_id}"

    def put(self, kind: BlobKind, blob_id: str, data: bytes, *, sync: bool = True) -> str:
        """Store ``data`` durably under ``(kind, blob_id)``, replacing any earlier blob.

        With ``sync=False`` the blob is in place but durable only once ``sync()`` has
        been called on its path.

        Returns:
            The blob's path.

        Raises:
            BlobStoreError: the write failed; nothing is left under the blob's path.
        """
        path = self.path(kind, blob_id)
        try:
            if self._local:
                _write_local(path, data, sync=sync)
            else:
                with self._fs.open_output_stream(path) as out:
                    out.write(data)
        except (OSError, pa.ArrowException) as e:
            raise BlobStoreError(f"could not store {kind} blob {blob_id}") from e
        return path

    def create(self, kind: BlobKind, blob_id: str, data: bytes, *, sync: bool = True) -> bool:
        """Store ``data`` under ``(kind, blob_id)`` unless a blob is there already.

        ``sync`` as for ``put``.

        On a local root the check and the write are one atomic step (a hard link, which
        fails if the name exists): of two processes creating the same blob at once, one
        wins and the other is told so. An object store has no such primitive in
        ``pyarrow.fs``: there it is a check, then a write.

        Returns:
            True if this call stored the blob, False if one existed (left unchanged).

        Raises:
            BlobStoreError: the write failed; nothing is left under the blob's path.
        """
        path = self.path(kind, blob_id)
        try:
            if self._local:
                return _write_local(path, data, exclusive=True, sync=sync)
            if self._fs.get_file_info(path).type == pafs.FileType.File:
                return False
            with self._fs.open_output_stream(path) as out:
                out.write(data)
        except (OSError, pa.ArrowException) as e:
            raise BlobStoreError(f"could not store {kind} blob {blob_id}") from e
        return True

    def sync(self, paths: Iterable[str]) -> None:
        """Make the blobs at ``paths`` (written with ``sync=False``) durable, together.

        Linux: one ``syncfs`` of the filesystem that holds them. Elsewhere each file and
        each of their folders is ``fsync``-ed. Object stores: nothing to do.

        Raises:
            BlobStoreError: the barrier failed; the blobs may not survive a crash.
        """
        paths = list(paths)
        if not paths or not self._local:
            return
        try:
            if _SYNCFS is not None:
                fd = os.open(os.path.dirname(paths[0]), os.O_RDONLY)
                try:
                    if _SYNCFS(fd) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, os.strerror(err))
                finally:
                    os.close(fd)
                return
            for path in paths:
                _fsync_path(path)
            for directory in {os.path.dirname(p) for p in paths}:
                _fsync_path(directory)
        except OSError as e:
            raise BlobStoreError(f"could not make {len(paths)} blobs durable") from e

    def get(self, kind: BlobKind, blob_id: str, *, limit: int | None = None) -> bytes | None:
        """The blob's bytes (its first ``limit`` bytes only, if given), or ``None`` if there is none."""
        path = self.path(kind, blob_id)
        size = -1 if limit is None else limit
        try:
            if self._local:
                with open(path, "rb") as f:
                    return f.read(size)
            with self._fs.open_input_stream(path) as f:
                return f.read() if limit is None else f.read(limit)
        except FileNotFoundError:
            return None
        except (OSError, pa.ArrowException) as e:
            if _missing(e):
                return None
            raise BlobStoreError(f"could not read {kind} blob {blob_id}") from e

    def exists(self, kind: BlobKind, blob_id: str) -> bool:
        """Whether blob ``(kind, blob_id)`` is stored."""
        path = self.path(kind, blob_id)
        if self._local:
            return os.path.isfile(path)
        return self._fs.get_file_info(path).type == pafs.FileType.File

    def ids(self, kind: BlobKind) -> list[str]:
        """The ids of every blob of ``kind`` (one listing of its folders)."""
        if kind not in _KINDS:
            raise ValueError(f"unknown blob kind {kind!r}")
        selector = pafs.FileSelector(f"{self.root}/{kind}", recursive=True, allow_not_found=True)
        try:
            infos = self._fs.get_file_info(selector)
        except (OSError, pa.ArrowException) as e:
            raise BlobStoreError(f"could not list {kind} blobs") from e
        # Temp files of writes in flight have a suffix that no id matches.
        return [i.base_name for i in infos if i.type == pafs.FileType.File and _BLOB_ID.fullmatch(i.base_name)]

    def delete(self, kind: BlobKind, blob_id: str) -> bool:
        """Remove the blob; returns whether there was one."""
        path = self.path(kind, blob_id)
        try:
            if self._local:
                os.remove(path)
            else:
                self._fs.delete_file(path)
        except FileNotFoundError:
            return False
        except (OSError, pa.ArrowException) as e:
            if _missing(e):
                return False
            raise BlobStoreError(f"could not delete {kind} blob {blob_id}") from e
        return True


def _missing(e: BaseException) -> bool:
    # pyarrow raises FileNotFoundError for local paths but a plain OSError whose message
    # names the missing path for some object stores.
    return isinstance(e, FileNotFoundError) or "not found" in str(e).lower() or "does not exist" in str(e).lower()


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_local(path: str, data: bytes, *, exclusive: bool = False, sync: bool = True) -> bool:
    """Write (and ``fsync``), then rename into place, so the blob is whole or absent.

    With ``exclusive`` the temp file is linked into place instead, which fails if ``path``
    exists: returns False then, and nothing is changed. Returns True once written. Without
    ``sync`` neither the file nor its folder is ``fsync``-ed (see ``BlobStore.sync``).
    """
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        # Raw CVs are personal data: readable by the server's user only (0600).
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError as e:
                if e.errno not in _NO_HARD_LINKS:
                    raise
                # A filesystem without hard links: check, then rename (not atomic).
                if os.path.exists(path):
                    return False
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        # A failed write must not leave a temp file behind to be mistaken for data later.
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise
    if sync:
        # The rename is only durable once the directory entry is.
        _fsync_path(directory)
    return True
