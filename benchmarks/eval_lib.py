"""Pure helpers for the matching evaluation (``benchmarks/eval_matching.py``).

Everything here is plain Python and numpy, with no model and no Ray, so that it can be
unit-tested on hand-computed examples (``tests/test_eval_lib.py``):

- labels: which resumes count as relevant to a posting, and how much (graded gains for
  sibling categories, the Indeed role -> livecareer category mapping);
- data loading for the shared dev data (resume pool, Google postings, Indeed ads);
- ranking with a label-blind tie-break, and the metrics (nDCG@k with graded gains,
  average precision, precision@k);
- the lexical baselines (Okapi BM25 and TF-IDF cosine) and word chunking.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------

#: Close sibling categories of the livecareer set. In the graded variant a resume of a
#: sibling category earns ``SIBLING_GAIN`` instead of 0: a sales posting is not a wrong
#: place to find a business-development resume, and an accounting posting not for a finance
#: one. The pairs are the ones the data README names; the relation is symmetric.
CATEGORY_SIBLINGS: Mapping[str, frozenset[str]] = {
    "SALES": frozenset({"BUSINESS-DEVELOPMENT"}),
    "BUSINESS-DEVELOPMENT": frozenset({"SALES"}),
    "FINANCE": frozenset({"ACCOUNTANT"}),
    "ACCOUNTANT": frozenset({"FINANCE"}),
}
EXACT_GAIN = 1.0
SIBLING_GAIN = 0.5

#: Indeed search role -> the livecareer category whose resumes it is looking for. Only
#: roles with a defensible counterpart are kept, and even those are weak labels: the
#: INFORMATION-TECHNOLOGY resumes are IT managers, specialists and coordinators (systems,
#: networks, support, IT projects), not developers. Software, cloud, database, front-end,
#: blockchain and security ads share their infrastructure vocabulary, and among the 24
#: categories IT is the one such an employer would search.
INDEED_ROLE_TO_CATEGORY: Mapping[str, str] = {
    "HR": "HR",
    "software_engineer": "INFORMATION-TECHNOLOGY",
    "cloud_engineer": "INFORMATION-TECHNOLOGY",
    "database engineer": "INFORMATION-TECHNOLOGY",
    "frontend_dev": "INFORMATION-TECHNOLOGY",
    "blockchain developer": "INFORMATION-TECHNOLOGY",
    "cyber security": "INFORMATION-TECHNOLOGY",
}

#: Indeed roles left out of task B, with the reason. A weak label that is often wrong
#: would measure the mapping, not the ranker.
INDEED_ROLES_UNMAPPED: Mapping[str, str] = {
    "data analyst business analyst": (
        "splits between IT, FINANCE and CONSULTANT depending on the ad; no single category"
    ),
    "data_scientist": "no data-science category; IT, ENGINEERING and CONSULTANT all fit in part",
    "machine learning engineer": (
        "no ML or data category; the ads ask for modelling and statistics that the IT resumes do not show"
    ),
    "product_manager": "no product category; BUSINESS-DEVELOPMENT, IT and CONSULTANT all fit in part",
}


def graded_gains(
    query_category: str,
    cv_categories: Sequence[str],
    *,
    siblings: Mapping[str, Iterable[str]] = CATEGORY_SIBLINGS,
    sibling_gain: float = SIBLING_GAIN,
) -> np.ndarray:
    """Gain of each resume for a posting: 1 for its category, ``sibling_gain`` for a sibling.

    Args:
        query_category: the livecareer category the posting hires for.
        cv_categories: category of each resume, in pool order.
        siblings: category -> sibling categories (pass ``{}`` for binary gains).
        sibling_gain: gain of a sibling-category resume.

    Returns:
        float64 array of gains, one per resume.
    """
    near = frozenset(siblings.get(query_category, ()))
    return np.array(
        [
            EXACT_GAIN if c == query_category else (sibling_gain if c in near else 0.0)
            for c in cv_categories
        ],
        dtype=np.float64,
    )


def binary_relevance(query_category: str, cv_categories: Sequence[str]) -> np.ndarray:
    """1.0 for resumes of the posting's category, 0.0 otherwise (pool order)."""
    return graded_gains(query_category, cv_categories, siblings={})


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


class EvalDataError(ValueError):
    """The data folder is missing a file or holds something the harness cannot use."""


@dataclass(frozen=True)
class CVPool:
    """The resumes every query is ranked against, in one fixed order.

    Attributes:
        ids: resume ids (livecareer ids, unique).
        categories: livecareer category of each resume.
        texts: extracted text of each resume (``texts.jsonl``).
        pdf_paths: the source PDF of each resume, for rankers that run their own extraction.
        data_dir: the shared data folder the pool was read from.
    """

    ids: tuple[str, ...]
    categories: tuple[str, ...]
    texts: tuple[str, ...]
    pdf_paths: tuple[Path, ...]
    data_dir: Path

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Query:
    """One job posting used as a query.

    Attributes:
        id: posting id.
        category: the livecareer category it hires for (the label).
        group: what per-group tables are keyed by (the category for Google postings, the
            search role for Indeed ads).
        text: the posting text given to the rankers.
    """

    id: str
    category: str
    group: str
    text: str
    title: str = ""  # the posting's own title (Google ``title``, Indeed ``positionName``)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise EvalDataError(f"missing data file: {path}")
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_pool(data_dir: Path) -> CVPool:
    """Read the livecareer resumes (``texts.jsonl`` + ``resumes.csv``), sorted by id.

    Sorting by id, not by category, keeps the pool order free of label information.

    Raises:
        EvalDataError: a file is missing, or the two files disagree on ids or categories.
    """
    root = Path(data_dir) / "livecareer_resumes"
    rows = _read_jsonl(root / "texts.jsonl")
    meta_path = root / "resumes.csv"
    if not meta_path.is_file():
        raise EvalDataError(f"missing data file: {meta_path}")
    with meta_path.open(encoding="utf-8", newline="") as fh:
        meta = {r["id"]: r for r in csv.DictReader(fh)}
    rows.sort(key=lambda r: str(r["id"]))
    ids = tuple(str(r["id"]) for r in rows)
    if len(set(ids)) != len(ids):
        raise EvalDataError("texts.jsonl has duplicate resume ids")
    for r in rows:
        m = meta.get(str(r["id"]))
        if m is None or m["category"] != r["category"]:
            raise EvalDataError(f"resume {r['id']}: texts.jsonl and resumes.csv disagree")
    return CVPool(
        ids=ids,
        categories=tuple(str(r["category"]) for r in rows),
        texts=tuple(str(r["text"]) for r in rows),
        pdf_paths=tuple(root / meta[i]["file"] for i in ids),
        data_dir=Path(data_dir),
    )


def load_google_jds(data_dir: Path) -> list[Query]:
    """Task A queries: the Google postings, each labelled with a livecareer category."""
    rows = _read_jsonl(Path(data_dir) / "google_jds" / "google_jds_dev.jsonl")
    return [Query(id=str(r["id"]), category=r["category"], group=r["category"], text=r["text"],
                  title=str(r.get("title") or "")) for r in rows]


def load_indeed_ads(
    data_dir: Path,
    *,
    per_role: int = 10,
    role_to_category: Mapping[str, str] = INDEED_ROLE_TO_CATEGORY,
) -> list[Query]:
    """Task B queries: up to ``per_role`` Indeed ads for each mapped search role.

    The subsample is deterministic: within a role, ads are taken in order of their Indeed
    id (an opaque hash, so the order is unrelated to content or scrape order).

    Raises:
        EvalDataError: the CSV is missing or has no ``description``/``query_role`` column.
    """
    path = Path(data_dir) / "indeed_jds" / "indeed_jds.csv"
    if not path.is_file():
        raise EvalDataError(f"missing data file: {path}")
    by_role: dict[str, list[dict]] = defaultdict(list)
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"id", "query_role", "description"} <= set(reader.fieldnames or ()):
            raise EvalDataError(f"{path}: expected columns id, query_role, description")
        for row in reader:
            if row["query_role"] in role_to_category:
                by_role[row["query_role"]].append(row)
    queries: list[Query] = []
    for role in sorted(by_role):
        for row in sorted(by_role[role], key=lambda r: r["id"])[:per_role]:
            # The position name is part of the ad as a reader sees it.
            text = f"{row.get('positionName', '').strip()}\n\n{row['description']}".strip()
            queries.append(Query(id=row["id"], category=role_to_category[role], group=role, text=text,
                                 title=row.get("positionName", "").strip()))
    return queries


# --------------------------------------------------------------------------------------
# Ranking and metrics
# --------------------------------------------------------------------------------------


def tie_break_keys(ids: Sequence[str]) -> np.ndarray:
    """A label-blind secondary sort key per id (first 8 bytes of its SHA-1, as uint64).

    Rankers give many exact ties (BM25 scores of 0, a random floor...). Breaking them by
    pool position would leak whatever order the pool was built in; a hash of the id does not.
    """
    return np.array(
        [int.from_bytes(hashlib.sha1(i.encode("utf-8")).digest()[:8], "big") for i in ids],
        dtype=np.uint64,
    )


def rank_order(scores: np.ndarray, tie_keys: np.ndarray) -> np.ndarray:
    """Indices of ``scores`` from best to worst; equal scores ordered by ``tie_keys``.

    Raises:
        ValueError: shapes differ, or a score is NaN.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != tie_keys.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and tie keys {tie_keys.shape} must be equal 1-d shapes")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    # np.lexsort sorts by the last key first.
    return np.lexsort((tie_keys, -scores))


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def dcg_at_k(ranked_gains: Sequence[float], k: int) -> float:
    """Discounted cumulative gain of the first ``k`` positions: sum of gain_i / log2(i + 1).

    Gains are used linearly (not 2^gain - 1), so a 0.5 sibling is worth half an exact match.
    """
    _check_k(k)
    g = np.asarray(ranked_gains, dtype=np.float64)[:k]
    return float(np.sum(g / np.log2(np.arange(2, g.size + 2))))


def ndcg_at_k(ranked_gains: Sequence[float], k: int) -> float:
    """nDCG@k with graded gains.

    Args:
        ranked_gains: the gain of every candidate in the pool, in ranked order (best first).
            The whole ranking is needed: the ideal DCG is computed from all of it.
        k: cut-off.

    Returns:
        DCG@k divided by the DCG@k of the gains sorted in decreasing order, in [0, 1].

    Raises:
        ValueError: ``k < 1``, a negative gain, or no positive gain (nDCG is undefined).
    """
    g = np.asarray(ranked_gains, dtype=np.float64)
    if (g < 0).any():
        raise ValueError("gains must be non-negative")
    ideal = dcg_at_k(np.sort(g)[::-1], k)
    if ideal <= 0:
        raise ValueError("no positive gain in the ranking: nDCG is undefined")
    return dcg_at_k(g, k) / ideal


def average_precision(ranked_relevance: Sequence[float]) -> float:
    """Average precision of a full ranking with binary relevance (any gain > 0 is relevant).

    AP = mean over relevant items of precision at that item's rank.

    Raises:
        ValueError: no relevant item (AP is undefined).
    """
    rel = np.asarray(ranked_relevance, dtype=np.float64) > 0
    n_rel = int(rel.sum())
    if n_rel == 0:
        raise ValueError("no relevant item in the ranking: AP is undefined")
    hits = np.cumsum(rel)
    ranks = np.arange(1, rel.size + 1)
    return float(np.sum((hits / ranks)[rel]) / n_rel)


def precision_at_k(ranked_relevance: Sequence[float], k: int) -> float:
    """Share of relevant items (gain > 0) in the first ``k`` positions; short lists count as misses."""
    _check_k(k)
    rel = np.asarray(ranked_relevance, dtype=np.float64)[:k] > 0
    return float(rel.sum()) / k


@dataclass(frozen=True)
class QueryMetrics:
    """Metrics of one ranked query (``ndcg_graded`` equals ``ndcg`` when no siblings apply)."""

    query_id: str
    group: str
    ndcg: float
    ndcg_graded: float
    ap: float
    p_at_k: float


def query_metrics(
    query: Query,
    scores: np.ndarray,
    cv_categories: Sequence[str],
    tie_keys: np.ndarray,
    *,
    k: int = 10,
    siblings: Mapping[str, Iterable[str]] = CATEGORY_SIBLINGS,
    sibling_gain: float = SIBLING_GAIN,
) -> QueryMetrics:
    """Rank the pool by ``scores`` and compute every metric of one query."""
    order = rank_order(scores, tie_keys)
    binary = binary_relevance(query.category, cv_categories)[order]
    graded = graded_gains(query.category, cv_categories, siblings=siblings, sibling_gain=sibling_gain)[order]
    return QueryMetrics(
        query_id=query.id,
        group=query.group,
        ndcg=ndcg_at_k(binary, k),
        ndcg_graded=ndcg_at_k(graded, k),
        ap=average_precision(binary),
        p_at_k=precision_at_k(binary, k),
    )


# --------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9][a-z0-9+#]*")
# A short list: the lexical baselines should be plain, and IDF already discounts most of
# what a longer list would remove.
_STOPWORDS_TEXT = """a an and are as at be by for from has have in is it its of on or our that
the their this to was we were will with you your who which all any can may not but into than
also such other more"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens (letters, digits, ``+`` and ``#`` inside a word: c++, c#).

    Single characters and ``STOPWORDS`` are dropped.
    """
    return [t for t in _TOKEN.findall(text.lower()) if len(t) > 1 and t not in STOPWORDS]


def chunk_words(text: str, *, size: int = 200, overlap: int = 40) -> list[str]:
    """Split ``text`` into windows of ``size`` whitespace words, consecutive ones sharing ``overlap``.

    The overlap exists because 200 words are often a little over 256 word pieces, so an
    encoder that truncates at 256 would otherwise never see the end of each window. A
    trailing window that adds nothing new is not emitted; empty text gives no chunk.

    Raises:
        ValueError: ``size < 1`` or ``overlap`` not in ``[0, size)``.
    """
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size, got {size=}, {overlap=}")
    words = text.split()
    step = size - overlap
    chunks = []
    for start in range(0, len(words), step):
        chunks.append(" ".join(words[start : start + size]))
        if start + size >= len(words):
            break
    return chunks


# --------------------------------------------------------------------------------------
# Lexical baselines
# --------------------------------------------------------------------------------------


class _Vocabulary:
    """Term -> column index and a dense document-term count matrix over a document set."""

    def __init__(self, docs: Sequence[Sequence[str]]) -> None:
        self.index: dict[str, int] = {}
        for doc in docs:
            for t in doc:
                self.index.setdefault(t, len(self.index))
        self.counts = np.zeros((len(docs), len(self.index)), dtype=np.float64)
        for row, doc in enumerate(docs):
            for t, c in Counter(doc).items():
                self.counts[row, self.index[t]] = c
        self.df = (self.counts > 0).sum(axis=0).astype(np.float64)

    def query_counts(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Column ids and counts of the in-vocabulary query terms (unknown terms score 0)."""
        counts = Counter(t for t in tokens if t in self.index)
        cols = np.fromiter((self.index[t] for t in counts), dtype=np.int64, count=len(counts))
        qtf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        return cols, qtf


class BM25Index:
    """Okapi BM25 over a fixed document set.

    score(q, d) = sum over query terms t (with repetition) of
    idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl)),
    idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)) (the non-negative Lucene form).
    Counting repeated query terms (no k3 saturation) lets a long posting stress the
    words it repeats, which is the rank_bm25 behaviour too.
    """

    def __init__(self, docs: Sequence[Sequence[str]], *, k1: float = 1.5, b: float = 0.75) -> None:
        """Build the index.

        Args:
            docs: tokenized documents.
            k1: term-frequency saturation.
            b: length normalization.

        Raises:
            ValueError: no document, or every document is empty.
        """
        if not docs:
            raise ValueError("BM25 needs at least one document")
        self._vocab = _Vocabulary(docs)
        lengths = self._vocab.counts.sum(axis=1)
        avgdl = lengths.mean()
        if avgdl <= 0:
            raise ValueError("every document is empty")
        n = len(docs)
        self.idf = np.log1p((n - self._vocab.df + 0.5) / (self._vocab.df + 0.5))
        tf = self._vocab.counts
        norm = k1 * (1.0 - b + b * lengths / avgdl)
        # Precomputed once: the saturated tf part does not depend on the query.
        self._weights = tf * (k1 + 1.0) / (tf + norm[:, None])

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for a tokenized query (all 0 if no term is known)."""
        cols, qtf = self._vocab.query_counts(query_tokens)
        if cols.size == 0:
            return np.zeros(self._weights.shape[0])
        return self._weights[:, cols] @ (qtf * self.idf[cols])


class TfidfIndex:
    """TF-IDF cosine over a fixed document set.

    Weight = (1 + ln tf) * idf with idf = ln((1 + N) / (1 + df)) + 1 (smoothed, as
    scikit-learn's ``sublinear_tf=True, smooth_idf=True``), rows l2-normalized. Queries use
    the document set's idf; terms it never saw are ignored.
    """

    def __init__(self, docs: Sequence[Sequence[str]]) -> None:
        """Build the index from tokenized documents.

        Raises:
            ValueError: no document.
        """
        if not docs:
            raise ValueError("TF-IDF needs at least one document")
        self._vocab = _Vocabulary(docs)
        n = len(docs)
        self.idf = np.log((1.0 + n) / (1.0 + self._vocab.df)) + 1.0
        self._matrix = _l2_rows(_sublinear(self._vocab.counts) * self.idf)

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """Cosine of every document with the query (all 0 if no term is known)."""
        cols, qtf = self._vocab.query_counts(query_tokens)
        if cols.size == 0:
            return np.zeros(self._matrix.shape[0])
        q = _sublinear(qtf) * self.idf[cols]
        return self._matrix[:, cols] @ (q / np.linalg.norm(q))


def _sublinear(tf: np.ndarray) -> np.ndarray:
    out = np.zeros_like(tf)
    nz = tf > 0
    out[nz] = 1.0 + np.log(tf[nz])
    return out


def _l2_rows(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


def mean_or_nan(values: Iterable[float]) -> float:
    """Arithmetic mean, NaN for no value (a table cell then reads ``n/a``)."""
    vals = list(values)
    return math.fsum(vals) / len(vals) if vals else math.nan
