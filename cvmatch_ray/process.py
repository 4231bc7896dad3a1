"""The one processing path of a document: extract -> standardize -> features -> embed.

Each step is a plain function over a batch that returns one typed outcome per item, in
order: the next step's input, or a :class:`Failed` that names the stage, the error code
and why. A failed item never fails its batch, and every step passes failures through, so
steps chain (``run_batch``) or run apart, on whatever schedules them: the CLI in this
process (``local_ingest.py``), Ray Data actor pools (``pipelines/ray_ingest.py``), the
Serve model deployments (``serve/deployments.py``). No Ray here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import numpy as np

from cvmatch_ray.config import Settings
from cvmatch_ray.embed import EmptyDocumentError, SectionText, cv_section_texts, jd_section_texts
from cvmatch_ray.errors import ErrorCode, ProcessingError, Stage
from cvmatch_ray.extract import ExtractionError, detect_kind, extract_document
from cvmatch_ray.ids import document_id
from cvmatch_ray.match.features import cv_feature_columns
from cvmatch_ray.schemas import CVProfile, CVStats, JDProfile, Provenance
from cvmatch_ray.standardize.base import (
    StandardizationError,
    Standardizer,
    standardize_cvs,
    standardize_jds,
)
from cvmatch_ray.storage.records import CVRecord, JDRecord

if TYPE_CHECKING:
    # Only a type here: importing LanceDB cost every Ray worker that runs a step ~1 s of
    # CPU at start, on the critical path of a pipeline that never writes from there.
    from cvmatch_ray.storage.tables import Store

logger = logging.getLogger(__name__)

Kind = Literal["cv", "jd"]
T = TypeVar("T")


class SectionEmbedder(Protocol):
    """What the embed step needs of an encoder (``embed.Embedder``)."""

    def embed_sections(self, section_texts: Sequence[dict[str, SectionText]]) -> np.ndarray: ...


# ------------------------------------------------------------------ the outcomes


@dataclass
class RawDocument:
    """A document to process: its bytes, what it is, and the file name stored with it.

    The file name is kept with the record but never given to extraction, so no error
    message carries it (the caller knows which file it gave).
    """

    data: bytes
    kind: Kind = "cv"
    filename: str | None = None
    doc_id: str = ""  # the content id; computed from ``data`` when not given

    def __post_init__(self) -> None:
        if not self.doc_id:
            self.doc_id = document_id(self.data)


@dataclass
class Extracted:
    """A document's text, from the extract step."""

    doc_id: str
    kind: Kind
    filename: str | None
    text: str
    flags: list[str]
    extractor: str


@dataclass
class Standardized:
    """A document's profile and where it came from, from the standardize step."""

    doc_id: str
    kind: Kind
    filename: str | None
    text: str
    flags: list[str]
    profile: CVProfile | JDProfile
    provenance: Provenance  # the standardizer's, with the extractor that read the text
    features: dict[str, Any] | None = None  # a CV's scorer columns, from the features step

    def section_texts(self) -> dict[str, SectionText]:
        """The three texts to embed (blinded for a CV); raises ``EmptyDocumentError``."""
        if isinstance(self.profile, CVProfile):
            return cv_section_texts(self.profile, self.text)
        return jd_section_texts(self.profile, self.text)


@dataclass
class Processed:
    """A document ready to store: its record, from the embed step."""

    record: CVRecord | JDRecord

    @property
    def doc_id(self) -> str:
        return self.record.cv_id if isinstance(self.record, CVRecord) else self.record.jd_id


@dataclass(frozen=True)
class Failed:
    """A document that a step refused: where, with which code, and why."""

    doc_id: str
    kind: Kind
    stage: Stage
    code: ErrorCode
    message: str

    def error(self) -> ProcessingError:
        """This failure as the exception the API raises."""
        return ProcessingError(self.stage, self.code, self.message)


def unwrap(result: T | Failed) -> T:
    """The step's result, or its failure raised as a ``ProcessingError`` (for one-document callers)."""
    if isinstance(result, Failed):
        raise result.error()
    return result


# ------------------------------------------------------------ where the time goes

#: The steps a document goes through, in order, as stage-time tables name them.
STEPS: tuple[str, ...] = ("extract", "standardize", "features", "embed", "write")


@dataclass
class StageTimes:
    """Wall seconds spent in each step, summed over the batches (and workers) that ran it.

    Each front end adds what it measured where the step ran (``timed``), so a benchmark
    reads where the time goes from the pipeline itself, at the cost of two clock reads per
    batch and step.
    """

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Add the wall time of the ``with`` block to ``step`` (also when it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(step, time.perf_counter() - start)

    def add(self, step: str, seconds: float) -> None:
        self.seconds[step] = self.seconds.get(step, 0.0) + seconds


# --------------------------------------------------------------------- the steps


def sniff(document: RawDocument) -> Failed | None:
    """The refusal of a document whose type alone rules it out (empty, not a document
    type), from its first bytes and without parsing it; None when it may go on."""
    try:
        detect_kind(document.data)
    except ExtractionError as e:
        return Failed(document.doc_id, document.kind, Stage.extract, ErrorCode(e.code), e.message)
    return None


def extract_batch(documents: Sequence[RawDocument | Failed], settings: Settings) -> list[Extracted | Failed]:
    """Bytes -> text, document by document."""
    out: list[Extracted | Failed] = []
    for doc in documents:
        if isinstance(doc, Failed):
            out.append(doc)
            continue
        try:
            extracted = extract_document(doc.data, settings=settings)
        except ExtractionError as e:
            out.append(Failed(doc.doc_id, doc.kind, Stage.extract, ErrorCode(e.code), e.message))
            continue
        out.append(Extracted(doc.doc_id, doc.kind, doc.filename, extracted.text, list(extracted.flags), extracted.extractor))
    return out


def standardize_batch(items: Sequence[Extracted | Failed], standardizer: Standardizer) -> list[Standardized | Failed]:
    """Text -> profile; the CVs and the JDs of the batch each go to the backend in one call
    (an LLM backend batches its prompts)."""
    out: list[Standardized | Failed] = list(items)  # type: ignore[arg-type]  # Extracted ones replaced below
    for kind, many in (("cv", standardize_cvs), ("jd", standardize_jds)):
        todo = [i for i, item in enumerate(items) if isinstance(item, Extracted) and item.kind == kind]
        if not todo:
            continue
        results = many(standardizer, [items[i].text for i in todo])  # type: ignore[union-attr]
        for i, profile in zip(todo, results, strict=True):
            item = items[i]
            assert isinstance(item, Extracted)
            if isinstance(profile, StandardizationError):
                out[i] = Failed(item.doc_id, item.kind, Stage.standardize, ErrorCode.standardization_failed, str(profile))
                continue
            provenance = standardizer.provenance.model_copy(update={"extractor": item.extractor})
            out[i] = Standardized(item.doc_id, item.kind, item.filename, item.text, item.flags, profile, provenance)
    return out


def features_batch(items: Sequence[Standardized | Failed]) -> list[Standardized | Failed]:
    """The scorer's features of each standardized CV (``match.features.cv_feature_columns``:
    lexical counts, normalized titles, skill lines...), computed before it is stored."""
    out: list[Standardized | Failed] = []
    for item in items:
        if isinstance(item, Standardized) and isinstance(item.profile, CVProfile) and item.features is None:
            item = replace(item, features=cv_feature_columns(item.profile, item.text))
        out.append(item)
    return out


def build_record(item: Standardized, vectors: np.ndarray) -> CVRecord | JDRecord:
    """The record stored for a document: the one place a ``CVRecord``/``JDRecord`` is made."""
    if isinstance(item.profile, CVProfile):
        if item.features is None:
            raise ValueError(f"CV {item.doc_id}: features_batch must run before build_record")
        return CVRecord(
            cv_id=item.doc_id,
            filename=item.filename,
            text=item.text,
            profile=item.profile,
            stats=CVStats.of(item.profile),
            provenance=item.provenance,
            flags=list(item.flags),
            features=item.features,
            vectors=vectors,
        )
    return JDRecord(
        jd_id=item.doc_id, filename=item.filename, text=item.text, profile=item.profile,
        provenance=item.provenance, vectors=vectors,
    )


def embed_batch(items: Sequence[Standardized | Failed], embedder: SectionEmbedder) -> list[Processed | Failed]:
    """Profile -> section vectors -> record, every document of the batch in one encoder call.

    A document with nothing to embed fails alone (``empty_document``); an encoder failure
    fails the documents it was encoding (``embedding_failed``).
    """
    out: list[Processed | Failed] = list(items)  # type: ignore[arg-type]
    todo: list[tuple[int, Standardized, dict[str, SectionText]]] = []
    for i, item in enumerate(items):
        if isinstance(item, Standardized):
            try:
                todo.append((i, item, item.section_texts()))
            except EmptyDocumentError as e:
                out[i] = Failed(item.doc_id, item.kind, Stage.embed, ErrorCode.empty_document, str(e))
    if not todo:
        return out
    try:
        vectors = embedder.embed_sections([sections for _, _, sections in todo])
    except (RuntimeError, ValueError) as e:
        logger.error("embedding %d documents failed: %s", len(todo), type(e).__name__)
        for i, item, _ in todo:
            out[i] = Failed(item.doc_id, item.kind, Stage.embed, ErrorCode.embedding_failed, str(e))
        return out
    for (i, item, _), v in zip(todo, vectors, strict=True):
        out[i] = Processed(build_record(item, v))
    return out


def run_batch(
    documents: Sequence[RawDocument],
    *,
    settings: Settings,
    standardizer: Standardizer,
    embedder: SectionEmbedder,
    times: StageTimes | None = None,
) -> list[Processed | Failed]:
    """Every step over ``documents`` in this process; one outcome per document, in order.

    ``times``, when given, gets the wall time of each step added.
    """
    times = times if times is not None else StageTimes()
    with times.timed("extract"):
        extracted = extract_batch(documents, settings)
    with times.timed("standardize"):
        standardized = standardize_batch(extracted, standardizer)
    with times.timed("features"):
        featured = features_batch(standardized)
    with times.timed("embed"):
        return embed_batch(featured, embedder)


def write_records(results: Sequence[Processed | Failed], store: Store) -> None:
    """Store the processed documents of a batch idempotently (merge on id), one commit per table."""
    records = [r.record for r in results if isinstance(r, Processed)]
    cvs = [r for r in records if isinstance(r, CVRecord)]
    jds = [r for r in records if isinstance(r, JDRecord)]
    if cvs:
        store.upsert_cvs(cvs)
    if jds:
        store.upsert_jds(jds)


# ------------------------------------------------------------ what a driver reports


@dataclass
class Outcome:
    """What happened to one input file, as the CLI and the bulk jobs report it."""

    file: str | None
    kind: Kind
    id: str | None = None
    error: str | None = None
    stage: Stage | None = None
    code: ErrorCode | None = None
    skipped: bool = False  # already stored: same bytes, same id, not processed again

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def of(cls, file: str | None, result: Processed | Failed) -> Outcome:
        """The outcome of a file that went through the steps."""
        if isinstance(result, Failed):
            return cls(file=file, kind=result.kind, id=result.doc_id, error=result.message, stage=result.stage,
                       code=result.code)
        kind: Kind = "cv" if isinstance(result.record, CVRecord) else "jd"
        return cls(file=file, kind=kind, id=result.doc_id)


__all__ = [
    "Extracted",
    "Failed",
    "Kind",
    "Outcome",
    "STEPS",
    "Processed",
    "RawDocument",
    "StageTimes",
    "Standardized",
    "build_record",
    "embed_batch",
    "extract_batch",
    "features_batch",
    "run_batch",
    "sniff",
    "standardize_batch",
    "unwrap",
    "write_records",
]
