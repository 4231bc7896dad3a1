"""Vectors held as int8 codes, and their dot products with a query within a stated error.

Whole-pool retrieval takes two dot products per CV and query (title, summed sections). As
float32 matrices that is 3 KB per CV at 384 dimensions, and at a million CVs one query
reads 3 GB: ~300 ms on 2 cores, the memory bus being the limit. Here every row is stored
as int8 codes with its own scale (a quarter of the bytes), and ``Int8Rows.dots`` returns,
next to each approximate dot product, a bound on how far the exact one can be: callers
can then rank by the approximation and still keep every row the exact product would keep
(``match.shortlist``).

The error of a row ``v`` quantized as ``v~ = s * c`` (``c`` int8) against a query ``q``:

    |v.q - v~.q'| <= |(v - v~).q| + |v~.(q - q')| <= ||v - v~|| ||q|| + ||v~|| ||q - q'||

where ``q'`` is the query as the kernel saw it (the int8 kernel rounds it to 8 bits; the
numpy kernel uses it as is), plus float rounding, bounded generously by ``float_slack``.
``||v - v~||`` is stored per row; ``||q - q'||`` is measured per query.

Two kernels, the same numbers within their bounds: PyTorch's fbgemm int8 GEMV (a project
dependency; ~4x faster than numpy's float32 product here) and a numpy fallback (chunks
converted to float32) where PyTorch's quantized engine is missing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def _row_norms(m: np.ndarray) -> np.ndarray:
    """[n] float32 Euclidean norms of the rows (float32 sums: ``float_slack`` covers them)."""
    return np.sqrt(np.einsum("ij,ij->i", m, m))


def float_slack(dim: int) -> float:
    """Relative float32 rounding allowed for over ``dim`` terms: a float32 sum of d terms
    errs by at most d * 2**-24 of the sum of their magnitudes (d = 384: 2.3e-5); twice that,
    plus 1e-6 for the few products and scalings around it. The int8 kernel's sum is exact."""
    return 2.0 * dim * 2.0**-24 + 1e-6

#: Added to every norm and bound, so that a zero row's bound is not exactly zero.
TINY = 1e-30
#: Rows converted to float32 at a time by the numpy kernel (a few MB, in cache).
_NUMPY_CHUNK = 16384
#: Rows per packed block of the int8 kernel: packing a million rows at once took 19-50 s
#: here, in blocks of 262,144 about 8 s, at the same query time (blocks of 65,536 were
#: slower to query); a query runs one block after another.
PACK_ROWS = 262144
_MAX_CODE = 127


@functools.lru_cache(maxsize=1)
def _torch_quantized() -> Any | None:
    """``torch`` when its fbgemm int8 linear is there, else None (then numpy computes);
    looked up once per process."""
    try:
        import torch

        engines = torch.backends.quantized.supported_engines
        torch.ops.quantized.linear_dynamic  # noqa: B018 (raises where the op is missing)
        if "fbgemm" in engines or "x86" in engines:
            return torch
    except (ImportError, AttributeError, RuntimeError):
        pass
    logger.info("no int8 kernel (PyTorch's fbgemm): numpy computes the int8 dot products (slower)")
    return None


def _pack(torch: Any, codes: np.ndarray, scales: np.ndarray) -> Any:
    """fbgemm's packed form of int8 rows with per-row scales (a copy in its own layout)."""
    with warnings.catch_warnings():
        # Quantized tensors are deprecated in favour of torchao; torch is pinned, and the
        # packed int8 GEMV they feed is the one fast int8 product torch has on CPU.
        warnings.simplefilter("ignore", UserWarning)
        weight = torch._make_per_channel_quantized_tensor(  # noqa: SLF001
            torch.from_numpy(codes), torch.from_numpy(scales.astype(np.float64)),
            torch.zeros(len(codes), dtype=torch.long), 0)
        return torch.ops.quantized.linear_prepack(weight, None)


@dataclass
class Int8Rows:
    """A float matrix's rows as int8 codes: ``row ~= scale * codes``, with what that lost.

    Args:
        codes: [n, d] int8.
        scales: [n] float32, max |row| / 127 (1 for a zero row).
        errors: [n] float32, ``||row - scale * codes||`` rounded up.
        norms: [n] float32, ``||scale * codes||`` rounded up.
    """

    codes: np.ndarray
    scales: np.ndarray
    errors: np.ndarray
    norms: np.ndarray
    _packed: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def nbytes(self) -> int:
        """Bytes held (codes, per-row numbers, and the int8 kernel's packed copy once made)."""
        packed = self.codes.nbytes if self._packed is not None else 0  # fbgemm's copy: one byte per code
        return self.codes.nbytes + self.scales.nbytes + self.errors.nbytes + self.norms.nbytes + packed

    @classmethod
    def quantize(cls, matrix: np.ndarray) -> Int8Rows:
        """Codes of each row of a [n, d] float matrix, on its own scale."""
        m = np.asarray(matrix, dtype=np.float32)
        if m.ndim != 2:
            raise ValueError(f"expected a [n, d] matrix, got shape {m.shape}")
        rows = cls.allocate(len(m), m.shape[1])
        rows.set_rows(0, m)
        return rows

    @classmethod
    def allocate(cls, n: int, dim: int) -> Int8Rows:
        """``n`` rows of zeros, to be filled a block at a time (``set_rows``) without a copy."""
        return cls(np.zeros((n, dim), np.int8), np.ones(n, np.float32), np.zeros(n, np.float32),
                   np.zeros(n, np.float32))

    def set_rows(self, start: int, matrix: np.ndarray) -> None:
        """Quantize ``matrix``'s rows into rows ``start:start + len(matrix)``."""
        m = np.asarray(matrix, dtype=np.float32)
        end = start + len(m)
        peak = np.abs(m).max(axis=1) if m.shape[1] else np.zeros(len(m), np.float32)
        scales = np.where(peak > 0, peak / _MAX_CODE, 1.0).astype(np.float32)
        work = m / scales[:, None]  # one float32 scratch matrix, reused in place
        np.rint(work, out=work)
        np.clip(work, -_MAX_CODE, _MAX_CODE, out=work)
        self.codes[start:end] = work
        self.scales[start:end] = scales
        # Norms in float32, raised by their rounding's bound, so stored bounds are never short.
        raise_by = np.float32(1 + float_slack(m.shape[1]))
        work *= scales[:, None]  # the approximation s * c
        self.norms[start:end] = _row_norms(work) * raise_by + np.float32(TINY)
        np.subtract(m, work, out=work)  # what it lost
        self.errors[start:end] = _row_norms(work) * raise_by + np.float32(TINY)

    def pack(self) -> bool:
        """Make the int8 kernel's packed copy now (a few seconds per million rows) rather than
        on the first ``dots``; False where there is no int8 kernel (numpy computes).

        The last block also holds the identity (127 at scale 1/127: exact in int8), so the
        same call that gives the products gives the query as the kernel rounded it (its
        own rounding, 8 bits over the query's range: asking beats re-deriving its formula,
        and a separate call for it cost 4-11 ms here).
        """
        torch = _torch_quantized()
        if torch is None:
            return False
        with self._lock:
            if self._packed is None:
                dim = self.codes.shape[1]
                starts = list(range(0, len(self), PACK_ROWS)) or [0]
                blocks = []
                for s in starts:
                    codes, scales = self.codes[s:s + PACK_ROWS], self.scales[s:s + PACK_ROWS]
                    if s == starts[-1]:
                        codes = np.concatenate([codes, np.eye(dim, dtype=np.int8) * _MAX_CODE])
                        scales = np.concatenate([scales, np.full(dim, 1.0 / _MAX_CODE, np.float32)])
                    blocks.append(_pack(torch, codes, scales))
                self._packed = blocks
        return True

    def dots(self, query: np.ndarray, *, kernel: str = "auto") -> tuple[np.ndarray, np.ndarray]:
        """``(approx, bound)``: [n] float32 each, ``|row . query - approx| <= bound`` for every row.

        Args:
            query: [d] float vector.
            kernel: ``"auto"`` (int8 when torch has it), ``"int8"`` or ``"numpy"``.
        """
        q = np.asarray(query, dtype=np.float32)
        if not len(self):
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        if kernel not in ("auto", "int8", "numpy"):
            raise ValueError(f"unknown kernel {kernel!r}")
        torch = _torch_quantized() if kernel != "numpy" else None
        if kernel == "int8" and torch is None:
            raise RuntimeError("PyTorch's int8 kernel (fbgemm) is not available")
        if torch is not None and self.pack():
            approx, q_seen = self._dots_int8(torch, q)
        else:
            approx, q_seen = self._dots_numpy(self.codes, self.scales, q), q
        return approx, self._bound(q, q_seen, self.errors, self.norms)

    def dots_rows(self, rows: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``dots`` of some rows only (numpy: the rows' codes are gathered, not scanned)."""
        rows = np.asarray(rows, dtype=np.int64)
        q = np.asarray(query, dtype=np.float32)
        approx = self._dots_numpy(self.codes[rows], self.scales[rows], q)
        return approx, self._bound(q, q, self.errors[rows], self.norms[rows])

    @staticmethod
    def _bound(q: np.ndarray, q_seen: np.ndarray, errors: np.ndarray, norms: np.ndarray) -> np.ndarray:
        """The module docstring's bound per row, in float32, raised by the float rounding of
        the products and of these few float32 operations (``float_slack``)."""
        slack = float_slack(len(q))
        q_norm = float(np.linalg.norm(q.astype(np.float64)))
        shift = float(np.linalg.norm(q.astype(np.float64) - q_seen.astype(np.float64)))
        per_norm = np.float32((shift + slack * (q_norm + shift)) * (1 + slack))
        return errors * np.float32(q_norm * (1 + slack)) + norms * per_norm + np.float32(TINY)

    @staticmethod
    def _dots_numpy(codes: np.ndarray, scales: np.ndarray, q: np.ndarray) -> np.ndarray:
        out = np.empty(len(codes), dtype=np.float32)
        for start in range(0, len(codes), _NUMPY_CHUNK):
            block = codes[start:start + _NUMPY_CHUNK].astype(np.float32)
            out[start:start + _NUMPY_CHUNK] = (block @ q) * scales[start:start + _NUMPY_CHUNK]
        return out

    def _dots_int8(self, torch: Any, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """fbgemm's products, one packed block after another (the query is rounded the same
        way for each: the same values), and the query as it rounded it (``pack``)."""
        x = torch.from_numpy(np.ascontiguousarray(q))[None, :]
        out = np.empty(len(self) + len(q), dtype=np.float32)
        with single_threaded():
            for i, packed in enumerate(self._packed):
                block = torch.ops.quantized.linear_dynamic(x, packed, False).numpy()[0]
                out[i * PACK_ROWS:i * PACK_ROWS + len(block)] = block
        return out[:len(self)], out[len(self):]


_THREADS_LOCK = threading.Lock()
_threads_users = 0
_threads_restore: list[Any] = []


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """PyTorch's intra-op threads and the BLAS's threads at 1 while a query's products run
    (restored when the last running query leaves; queries may overlap in threads).

    Each product here is one memory-bound pass the threads do not share: fbgemm's int8
    GEMV took 57 ms per million rows with 2 threads, 36 with 1; numpy's float32 product of
    a million 32-wide rows 16 against 9-12. Worse, OpenBLAS's idle threads spin on a core
    for a while after each call: a whole approximate shortlist at a million CVs took 160 ms
    with them and 100 ms without (its LanceDB read slowed most). Both settings are
    process-wide; whole-pool matching runs where no model does (the API service embeds in
    its own deployment).
    """
    global _threads_users
    with _THREADS_LOCK:
        if _threads_users == 0:
            _threads_restore[:] = _limit_threads()
        _threads_users += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _threads_users -= 1
            if _threads_users == 0:
                for restore in reversed(_threads_restore):  # last set, first restored:
                    restore()  # (limiting the BLAS here also moved PyTorch's setting)
                _threads_restore.clear()


def _limit_threads() -> list[Any]:
    """Set PyTorch's and the BLAS's threads to 1; the callables that set them back."""
    restore: list[Any] = []
    torch = _torch_quantized()
    if torch is not None:
        saved = torch.get_num_threads()
        torch.set_num_threads(1)
        restore.append(functools.partial(torch.set_num_threads, saved))
    controller = _blas_controller()
    if controller is not None:
        limited = controller.limit(limits=1, user_api="blas")
        restore.append(limited.restore_original_limits)
    return restore


def _blas_controller() -> Any | None:
    """threadpoolctl's view of the BLAS libraries loaded now (~1 ms to make: it inspects the
    loaded libraries). Not cached: a library loaded later (scipy's OpenBLAS comes with
    sentence-transformers' imports) would keep its threads."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


#: Dimensions a sketch keeps (``Sketch``).
SKETCH_DIMS = 32


@dataclass
class Sketch:
    """Rows projected on a few principal directions of a sample of them: dot products in
    ``SKETCH_DIMS`` dimensions instead of all, approximate (what the projection drops is
    not bounded), for a first ranking that is cheap over a whole pool.

    float32, multiplied by numpy: 128 bytes per row at 32 dimensions. The int8 kernel is
    no help this narrow (its per-row cost dominates: 160+ ms per million rows here,
    against 30 ms for float32).

    Args:
        basis: [r, d] float32, orthonormal rows (the sample's top right singular vectors).
        rows: [n, r] float32, the rows in that basis.
    """

    basis: np.ndarray
    rows: np.ndarray

    @staticmethod
    def fit(sample: np.ndarray, dims: int = SKETCH_DIMS) -> np.ndarray:
        """The basis: ``dims`` top right singular vectors of ``sample`` (not centred: a dot
        product keeps the mean direction), zero rows where the sample has fewer."""
        m = np.asarray(sample, dtype=np.float64)
        basis = np.zeros((dims, m.shape[1]), dtype=np.float32)
        if len(m):
            # The right singular vectors are the Gram matrix's eigenvectors: a d x d problem
            # (an SVD of the sample itself took 6 s for 8,192 rows on a loaded machine).
            values, vectors = np.linalg.eigh(m.T @ m)
            order = np.argsort(values)[::-1][: min(dims, len(m), m.shape[1])]
            basis[: len(order)] = vectors[:, order].T
        return basis

    @staticmethod
    def project(basis: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """The rows of ``matrix`` in the basis (one part of a sketch)."""
        return np.asarray(matrix, dtype=np.float32) @ basis.T

    @property
    def nbytes(self) -> int:
        return self.basis.nbytes + self.rows.nbytes

    def dots(self, query: np.ndarray) -> np.ndarray:
        """[n] approximate dot products of every row with ``query``."""
        return self.rows @ (self.basis @ np.asarray(query, dtype=np.float32))
