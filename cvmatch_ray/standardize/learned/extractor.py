"""The trained CV field extractor: a linear-chain CRF over tokens, BIO tags per field.

The model is a python-crfsuite file shipped next to this module (``model.crfsuite``,
trained by ``scripts/train_extractor.py`` on the CC0 dotin resume NER set; see README.md
here). It is loaded lazily, once per process, and needs no network.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pycrfsuite

from cvmatch_ray.standardize.learned.features import Token, featurize
from cvmatch_ray.taxonomy import Taxonomy, load_taxonomy

logger = logging.getLogger(__name__)

MODEL_FILE = "model.crfsuite"

# Field label -> the dotin labels it is trained on.
FIELD_LABELS: dict[str, tuple[str, ...]] = {
    "NAME": ("Name",),
    "COMPANY": ("Companies worked at",),
    "TITLE": ("Designation",),
    "DEGREE": ("Degree",),
    "COLLEGE": ("College Name",),
    "LOCATION": ("Location",),
    "DATE": ("Years of Experience",),
    "GRAD": ("Graduation Year",),
    "SKILL": ("Tech Tools", "Job Specific Skills"),
}
DOTIN_TO_FIELD = {src: field for field, srcs in FIELD_LABELS.items() for src in srcs}


class ExtractorError(RuntimeError):
    """The shipped model file is missing or unreadable."""


@dataclass(frozen=True, slots=True)
class Span:
    """A labelled span of the text: its field, offsets and the text as written."""

    label: str
    start: int
    end: int
    text: str


def spans_from_tags(text: str, tokens: list[Token], tags: list[str]) -> list[Span]:
    """Contiguous B-/I- runs of one label as spans of the original text.

    An I- tag after O or after another label opens a span too (the CRF rarely emits one).
    """
    out: list[Span] = []
    cur: tuple[str, int, int] | None = None
    for tok, tag in zip(tokens, tags, strict=True):
        kind, _, label = tag.partition("-")
        if kind == "I" and cur is not None and cur[0] == label:
            cur = (label, cur[1], tok.end)
            continue
        if cur is not None:
            out.append(Span(cur[0], cur[1], cur[2], text[cur[1]:cur[2]]))
            cur = None
        if kind in ("B", "I"):
            cur = (label, tok.start, tok.end)
    if cur is not None:
        out.append(Span(cur[0], cur[1], cur[2], text[cur[1]:cur[2]]))
    return out


class FieldExtractor:
    """Labels names, companies, titles, degrees, institutions, places, dates and skills in CV text.

    Args:
        model_path: a crfsuite model file; defaults to the one shipped with the package.
        taxonomy: the lookup the features use; defaults to the shipped one.
    """

    def __init__(self, model_path: Path | None = None, *, taxonomy: Taxonomy | None = None) -> None:
        self.model_path = model_path
        self.taxonomy = taxonomy or load_taxonomy()
        self._tagger: pycrfsuite.Tagger | None = None
        self._lock = threading.Lock()

    def _open(self) -> pycrfsuite.Tagger:
        tagger = pycrfsuite.Tagger()
        if self.model_path is not None:
            path = self.model_path
            if not path.is_file():
                raise ExtractorError(f"extractor model {path} is missing")
            tagger.open(str(path))
        else:
            ref = resources.files("cvmatch_ray.standardize.learned") / MODEL_FILE
            with resources.as_file(ref) as path:
                if not path.is_file():
                    raise ExtractorError(f"extractor model {MODEL_FILE} is missing: run scripts/train_extractor.py")
                tagger.open(str(path))
        logger.info("field extractor loaded: %d labels", len(tagger.labels()))
        return tagger

    def spans(self, text: str) -> list[Span]:
        """The labelled spans of ``text``, in document order."""
        tokens, feats = featurize(text, self.taxonomy)
        if not tokens:
            return []
        with self._lock:  # a crfsuite Tagger is not safe to share between threads
            if self._tagger is None:
                self._tagger = self._open()
            tags = self._tagger.tag(feats)
        return spans_from_tags(text, tokens, tags)


@functools.lru_cache(maxsize=1)
def load_extractor() -> FieldExtractor:
    """The shipped extractor, one per process (the model itself opens on first use)."""
    return FieldExtractor()
