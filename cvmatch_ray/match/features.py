"""The scorer's features of a CV, computed from its profile and text before it is stored.

The processing path computes them (``process.features_batch``); the store persists them as
columns and the scorer reads them back (``FEATURE_COLUMNS``, ``CVFeatures``). Also here:
the BM25 tokenizer the JD query shares with the CVs, the pool's BM25 statistics, and
``CodedLists``, a pool's list columns as integer codes. Pure: no LanceDB, no Ray.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cvmatch_ray.embed import blind_text, cv_lexical_text
from cvmatch_ray.schemas import CVProfile

# Section vectors as stored; the order is embed.SECTIONS (title, skills, experience).
VECTOR_COLUMNS: tuple[str, ...] = ("vec_title", "vec_skills", "vec_experience")
# The blinded text's BM25 term counts (see ``lexical_counts``).
LEXICAL_COLUMNS: tuple[str, ...] = ("lex_terms", "lex_tfs", "lex_len")
# The CV text with contact details and gendered words removed (``embed.cv_lexical_text``):
# what the full-text index covers, so full-text search is as blind as the score.
LEXICAL_TEXT_COLUMN = "lexical_text"
# One entry per experience role, in profile order (``role_columns``): months, title as
# written, taxonomy occupation ("" if unknown) and canonical skills. The scorer's relevant
# experience (``match.experience``) reads them.
ROLE_COLUMNS: tuple[str, ...] = ("role_months", "role_titles", "role_occupations", "role_skills")
# What ``cv_feature_columns`` computes of one CV, in its schema order.
PROFILE_FEATURE_COLUMNS: tuple[str, ...] = (
    "skills",
    "experience_months",
    "education_rank",
    "titles",
    "norm_titles",
    "skill_lines",
    LEXICAL_TEXT_COLUMN,
    *LEXICAL_COLUMNS,
    *ROLE_COLUMNS,
)
# What the vectorized scorer reads of each CV: no text, no PII. ``skill_lines`` is, for
# each entry of ``skills``, the blinded CV line that mentions it (the evidence shown).
FEATURE_COLUMNS: tuple[str, ...] = (
    "cv_id",
    *(c for c in PROFILE_FEATURE_COLUMNS if c != LEXICAL_TEXT_COLUMN),
    *VECTOR_COLUMNS,
)

# A CV line quoted as evidence is cut to this many characters.
EVIDENCE_LINE_CHARS = 200
# Titles a CV is compared on by occupation: the headline and the latest job titles.
MAX_NORM_TITLES = 3
# A category earns related-skill credit only when it is narrow ("Database", "Accounting
# software"): ESCO's broad groups ("communication, collaboration and creativity", ~2,400
# skills) would make any two skills related.
RELATED_CATEGORY_MAX_SKILLS = 400
# Value and category masks a pool's CodedLists keeps (``CodedLists.category_mask``): 1 byte
# per CV each.
CACHED_MASKS = 32


# ------------------------------------------------------------------------- lexical
# The lexical signal is Okapi BM25 over the blinded CV text. Its tokens are lower-cased
# words of letters and digits ("c++" and "c#" keep their marks), minus stopwords and
# single characters: the same rule for CVs (stored term counts) and JD queries.

_LEX_TOKEN_RE = re.compile(r"[a-z0-9][a-z0-9+#]*")
LEXICAL_STOPWORDS: frozenset[str] = frozenset(
    """a an and are as at be been but by can for from has have in into is it its of on or our
    that the their them they this to was were will with within you your we us not no all any
    other such than then there these those who whom which what when where while would should
    may might must also etc per via""".split()
)


def lexical_tokens(text: str) -> list[str]:
    """The BM25 tokens of ``text``, in order."""
    return [t for t in _LEX_TOKEN_RE.findall(text.lower()) if len(t) > 1 and t not in LEXICAL_STOPWORDS]


def lexical_counts(text: str) -> tuple[list[str], list[int], int]:
    """``(terms, term frequencies, token count)`` of ``text``; terms sorted, unique."""
    tokens = lexical_tokens(text)
    counts: dict[str, int] = {}
    for t in tokens:
        counts[t] = counts.get(t, 0) + 1
    terms = sorted(counts)
    return terms, [counts[t] for t in terms], len(tokens)


@dataclass(frozen=True)
class LexicalStats:
    """Corpus statistics BM25 needs: document count, mean length and document frequencies."""

    num_docs: int
    avg_len: float
    df: Mapping[str, int]
    version: int | None = None


# -------------------------------------------------------------- titles and skills


def normalized_titles(titles: Sequence[str]) -> list[str]:
    """The taxonomy occupations of the first ``MAX_NORM_TITLES`` titles (unknown ones left out)."""
    from cvmatch_ray.taxonomy import load_taxonomy

    tax = load_taxonomy()
    out: list[str] = []
    for t in titles[:MAX_NORM_TITLES]:
        occupation = tax.normalize_title(t)
        if occupation and occupation not in out:
            out.append(occupation)
    return out


def _skill_lines(profile: CVProfile, text: str) -> list[str]:
    """For each skill of ``profile``, the first (blinded) line of ``text`` that mentions it."""
    lines = [ln for ln in blind_text(text, profile.contact).splitlines() if ln.strip()]
    lowered = [ln.lower() for ln in lines]
    out: list[str] = []
    for skill in profile.skills:
        found = ""
        for form in [*skill.mentions, skill.name]:
            needle = form.lower()
            if not needle:
                continue
            idx = next((i for i, ln in enumerate(lowered) if needle in ln), None)
            if idx is not None:
                found = lines[idx][:EVIDENCE_LINE_CHARS]
                break
        out.append(found)
    return out


def role_columns(profile: CVProfile) -> dict[str, list]:
    """The per-role columns of a CV (``ROLE_COLUMNS``), one entry per experience entry."""
    from cvmatch_ray.taxonomy import load_taxonomy

    tax = load_taxonomy()
    roles = profile.experience
    return {
        "role_months": [int(e.months) for e in roles],
        "role_titles": [e.title or "" for e in roles],
        "role_occupations": [(tax.normalize_title(e.title) or "") if e.title else "" for e in roles],
        "role_skills": [list(dict.fromkeys(e.skills)) for e in roles],
    }


@functools.lru_cache(maxsize=1)
def _narrow_categories() -> frozenset[str]:
    from cvmatch_ray.taxonomy import load_taxonomy

    tax = load_taxonomy()
    # The taxonomy has no public "size of a category"; count concepts per category name once.
    sizes = Counter(tax.category(name) for name in tax._canon_index)  # noqa: SLF001
    return frozenset(c for c, n in sizes.items() if c and n <= RELATED_CATEGORY_MAX_SKILLS)


@functools.lru_cache(maxsize=65536)
def skill_category(name: str) -> str | None:
    """The narrow taxonomy category of a canonical skill, or None (unknown or broad)."""
    from cvmatch_ray.taxonomy import load_taxonomy

    category = load_taxonomy().category(name)
    return category if category in _narrow_categories() else None


# -------------------------------------------------------------------- one CV


def cv_feature_columns(profile: CVProfile, text: str) -> dict[str, Any]:
    """The scorer's columns of one CV (``PROFILE_FEATURE_COLUMNS``), from its profile and text.

    Lists and numbers only, as the store persists them; nothing here reads contact details
    except to remove them (the evidence lines and lexical text are blinded).
    """
    lexical = cv_lexical_text(profile, text)
    terms, tfs, length = lexical_counts(lexical)
    return {
        "skills": profile.skill_names,
        "experience_months": profile.total_experience_months,
        "education_rank": profile.highest_education.rank,
        "titles": profile.titles,
        "norm_titles": normalized_titles(profile.titles),
        "skill_lines": _skill_lines(profile, text),
        LEXICAL_TEXT_COLUMN: lexical,
        "lex_terms": terms,
        "lex_tfs": tfs,
        "lex_len": length,
        **role_columns(profile),
    }


# --------------------------------------------------------------- coded lists


def flat_lists(lists: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The values of a list column and the row each value belongs to."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    flat = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    return flat, parents


class CodedLists:
    """A list-of-strings column (skills, occupations) as integer codes, for a whole pool.

    Built once per pool (``Store.pool_arrays``); then which rows hold a given value, or a
    value of a given category, is one pass over an integer array instead of string matching.
    ``score_table`` codes the rows it scores the same way.
    """

    def __init__(self, column: pa.ChunkedArray | pa.Array) -> None:
        self.n = len(column)
        flat, parents = flat_lists(column)
        encoded = pc.dictionary_encode(flat) if len(flat) else None
        self.values: list[str] = encoded.dictionary.to_pylist() if encoded is not None else []
        codes = (encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
                 if encoded is not None else np.zeros(0, dtype=np.int64))
        # Rows by value (an inverted index): the rows holding value k are
        # _rows[_starts[k]:_starts[k + 1]]; a lookup costs what the value's rows cost.
        order = np.argsort(codes, kind="stable")
        self._rows = parents[order]
        self._starts = np.searchsorted(codes[order], np.arange(len(self.values) + 1))
        self._index = {v: k for k, v in enumerate(self.values)}
        self._categories: dict[str, list[int]] | None = None
        self._masks: dict[tuple[str, str], np.ndarray] = {}
        self._masks_lock = threading.Lock()

    def _rows_of(self, codes: Sequence[int]) -> np.ndarray:
        return np.concatenate([self._rows[self._starts[k]:self._starts[k + 1]] for k in codes] or [np.zeros(0, np.int64)])

    def rows_with(self, value: str) -> np.ndarray:
        """The rows holding ``value`` (a row that holds it twice is there twice)."""
        return self._rows_of([self._index[value]]) if value in self._index else np.zeros(0, np.int64)

    def rows_with_category(self, category: str | None) -> np.ndarray:
        """The rows holding a skill of narrow category ``category`` (repeats as ``rows_with``)."""
        if self._categories is None:
            by_category: dict[str, list[int]] = {}
            for k, value in enumerate(self.values):
                narrow = skill_category(value)
                if narrow is not None:
                    by_category.setdefault(narrow, []).append(k)
            self._categories = by_category
        if category is None or category not in self._categories:
            return np.zeros(0, np.int64)
        return self._rows_of(self._categories[category])

    def value_mask(self, value: str) -> np.ndarray:
        """[n] bool: does the row hold ``value``? Kept like ``category_mask``."""
        return self._mask(("value", value), lambda: self.rows_with(value))

    def category_mask(self, category: str | None) -> np.ndarray:
        """[n] bool: does the row hold a skill of narrow category ``category``? The last
        ``CACHED_MASKS`` masks asked (values or categories) are kept: marking a category's
        rows is millions of writes at a million CVs (a quarter of a synthetic pool is a few
        million rows), and JDs ask for the same skills and categories again."""
        return self._mask(("category", category or ""), lambda: self.rows_with_category(category))

    def _mask(self, key: tuple[str, str], rows: Callable[[], np.ndarray]) -> np.ndarray:
        with self._masks_lock:  # queries may run in threads; the cache is shared
            mask = self._masks.pop(key, None)
        if mask is None:
            mask = np.zeros(self.n, dtype=bool)
            mask[rows()] = True
            mask.flags.writeable = False  # shared between queries
        with self._masks_lock:
            self._masks[key] = mask  # most recent last
            while len(self._masks) > CACHED_MASKS:
                self._masks.pop(next(iter(self._masks)))
        return mask

    def hits(self, wanted: Sequence[str]) -> np.ndarray:
        """[n, len(wanted)] bool: does row i hold wanted[j]?"""
        hits = np.zeros((self.n, len(wanted)), dtype=bool)
        for j, value in enumerate(wanted):
            hits[self.rows_with(value), j] = True
        return hits

    def category_hits(self, cats: Sequence[str | None]) -> np.ndarray:
        """[n, len(cats)] bool: does row i hold a skill of narrow category cats[j]?"""
        hits = np.zeros((self.n, len(cats)), dtype=bool)
        for j, category in enumerate(cats):
            hits[self.rows_with_category(category), j] = True
        return hits


# ------------------------------------------------------------ the scorer's view


@dataclass(frozen=True)
class CVFeatures:
    """What the scorer reads of a CV: skills, experience, education, titles, blinded terms, vectors; no PII.

    The fields after ``vectors`` are optional so that a CV built by hand scores as before.
    """

    cv_id: str
    skills: frozenset[str]
    experience_months: int
    education_rank: int
    vectors: np.ndarray  # [3, dim] float32, L2-normalized
    norm_titles: tuple[str, ...] = ()
    titles: tuple[str, ...] = ()
    skill_lines: Mapping[str, str] = field(default_factory=dict)  # skill -> blinded CV line
    lex_terms: tuple[str, ...] = ()  # sorted, unique
    lex_tfs: tuple[int, ...] = ()
    lex_len: int = 0
    # One entry per experience role, in profile order (``ROLE_COLUMNS``).
    role_months: tuple[int, ...] = ()
    role_titles: tuple[str, ...] = ()
    role_occupations: tuple[str, ...] = ()
    role_skills: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def from_profile(cls, cv_id: str, profile: CVProfile, vectors: np.ndarray, *, text: str | None = None) -> CVFeatures:
        """Features of a standardized CV, the same the processing path stores for it.

        Args:
            cv_id: the CV's id.
            profile: the standardized CV.
            vectors: its ``[3, dim]`` section vectors.
            text: the CV's extracted text (for the lexical terms and evidence lines).
        """
        if text is None:
            return cls(
                cv_id=cv_id,
                skills=frozenset(profile.skill_names),
                experience_months=profile.total_experience_months,
                education_rank=profile.highest_education.rank,
                vectors=np.asarray(vectors, dtype=np.float32),
                norm_titles=tuple(normalized_titles(profile.titles)),
                titles=tuple(profile.titles),
                **_role_fields(role_columns(profile)),
            )
        section_vectors = np.asarray(vectors, dtype=np.float32)
        row = {"cv_id": cv_id, **cv_feature_columns(profile, text)}
        row.update(zip(VECTOR_COLUMNS, section_vectors, strict=True))
        return cls.from_row(row)

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> CVFeatures:
        """Features from a stored ``cvs`` row (or a ``read_cv_features`` row as a dict)."""
        skills = list(row["skills"] or [])  # type: ignore[call-overload]
        lines = list(row.get("skill_lines") or [])  # type: ignore[attr-defined]
        return cls(
            cv_id=str(row["cv_id"]),
            skills=frozenset(skills),
            experience_months=int(row["experience_months"]),  # type: ignore[call-overload]
            education_rank=int(row["education_rank"]),  # type: ignore[call-overload]
            vectors=np.asarray([row[c] for c in VECTOR_COLUMNS], dtype=np.float32),
            norm_titles=tuple(row.get("norm_titles") or ()),  # type: ignore[attr-defined]
            titles=tuple(row.get("titles") or ()),  # type: ignore[attr-defined]
            skill_lines=dict(zip(skills, lines, strict=False)),
            lex_terms=tuple(row.get("lex_terms") or ()),  # type: ignore[attr-defined]
            lex_tfs=tuple(int(t) for t in row.get("lex_tfs") or ()),  # type: ignore[attr-defined]
            lex_len=int(row.get("lex_len") or 0),  # type: ignore[attr-defined]
            **_role_fields(row),
        )


def _role_fields(row: Mapping[str, object]) -> dict[str, tuple]:
    """The ``CVFeatures`` role fields of a row (a row without role columns: no roles)."""
    def get(name: str) -> list:
        return list(row.get(name) or [])  # type: ignore[call-overload]

    return {
        "role_months": tuple(int(m) for m in get("role_months")),
        "role_titles": tuple(str(t) for t in get("role_titles")),
        "role_occupations": tuple(str(t) for t in get("role_occupations")),
        "role_skills": tuple(tuple(s or ()) for s in get("role_skills")),
    }


def features_table(cvs: Sequence[CVFeatures]) -> pa.Table:
    """Build a scoring table from in-memory CV features (the layout the store returns)."""
    dim = cvs[0].vectors.shape[-1] if cvs else 0
    vec_type = pa.list_(pa.float32(), dim)
    strings = pa.list_(pa.string())
    skills = [sorted(c.skills) for c in cvs]
    columns: dict[str, pa.Array] = {
        "cv_id": pa.array([c.cv_id for c in cvs], pa.string()),
        "skills": pa.array(skills, strings),
        "experience_months": pa.array([c.experience_months for c in cvs], pa.int32()),
        "education_rank": pa.array([c.education_rank for c in cvs], pa.int8()),
        "titles": pa.array([list(c.titles) for c in cvs], strings),
        "norm_titles": pa.array([list(c.norm_titles) for c in cvs], strings),
        "skill_lines": pa.array([[c.skill_lines.get(s, "") for s in names] for c, names in zip(cvs, skills, strict=True)], strings),
        "lex_terms": pa.array([list(c.lex_terms) for c in cvs], strings),
        "lex_tfs": pa.array([list(c.lex_tfs) for c in cvs], pa.list_(pa.int32())),
        "lex_len": pa.array([c.lex_len for c in cvs], pa.int32()),
        "role_months": pa.array([list(c.role_months) for c in cvs], pa.list_(pa.int32())),
        "role_titles": pa.array([list(c.role_titles) for c in cvs], strings),
        "role_occupations": pa.array([list(c.role_occupations) for c in cvs], strings),
        "role_skills": pa.array([[list(r) for r in c.role_skills] for c in cvs], pa.list_(strings)),
    }
    for s, name in enumerate(VECTOR_COLUMNS):
        flat = np.concatenate([c.vectors[s] for c in cvs]).astype(np.float32) if cvs else np.zeros(0, np.float32)
        columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat), dim) if cvs else pa.array([], vec_type)
    return pa.table(columns)
