"""One document from bytes to a stored record: extract -> standardize -> embed -> store.

The steps are split so that every front end runs the same code: the CLI calls
``Ingestor.ingest`` in-process, the Ray Data pipeline maps ``prepare`` and ``embed`` over
batches on different actor pools, and the Serve deployments call them per upload. A failure
is an ``IngestError`` that names its stage; a batch keeps going past it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from cvmatch_ray.config import Settings
from cvmatch_ray.embed import Embedder, cv_section_texts, jd_section_texts
from cvmatch_ray.extract import ExtractionError, extract_document
from cvmatch_ray.schemas import CVProfile, CVStats, JDProfile, Provenance
from cvmatch_ray.standardize.base import StandardizationError, Standardizer, make_standardizer
from cvmatch_ray.store import CVRecord, JDRecord, Store, document_id

logger = logging.getLogger(__name__)

Kind = Literal["cv", "jd"]
Stage = Literal["read", "extract", "standardize", "embed", "store"]


class IngestError(Exception):
    """A document that could not be ingested, with the stage that failed and why."""

    def __init__(self, stage: Stage, code: str, message: str, *, http_status: int = 422) -> None:
        super().__init__(message)
        self.stage = stage
        self.code = code
        self.message = message
        self.http_status = http_status

    def __str__(self) -> str:
        return f"{self.stage}: {self.message}"

    def __reduce__(self):  # keep stage and code when Ray pickles the error across processes
        return (_rebuild_ingest_error, (self.stage, self.code, self.message, self.http_status))


def _rebuild_ingest_error(stage: Stage, code: str, message: str, http_status: int) -> IngestError:
    return IngestError(stage, code, message, http_status=http_status)


@dataclass
class Prepared:
    """A document extracted and standardized, waiting for its vectors."""

    doc_id: str
    kind: Kind
    filename: str | None
    text: str
    profile: CVProfile | JDProfile
    provenance: Provenance
    flags: list[str] = field(default_factory=list)

    def section_texts(self) -> dict[str, str]:
        if self.kind == "cv":
            return cv_section_texts(self.profile, self.text)  # type: ignore[arg-type]
        return jd_section_texts(self.profile, self.text)  # type: ignore[arg-type]

    def to_record(self, vectors: np.ndarray) -> CVRecord | JDRecord:
        if self.kind == "cv":
            assert isinstance(self.profile, CVProfile)
            return CVRecord(
                cv_id=self.doc_id,
                filename=self.filename,
                text=self.text,
                profile=self.profile,
                stats=CVStats.of(self.profile),
                provenance=self.provenance,
                flags=list(self.flags),
                vectors=vectors,
            )
        assert isinstance(self.profile, JDProfile)
        return JDRecord(
            jd_id=self.doc_id,
            filename=self.filename,
            text=self.text,
            profile=self.profile,
            provenance=self.provenance,
            vectors=vectors,
        )


@dataclass
class Outcome:
    """What happened to one input document."""

    file: str | None
    kind: Kind
    id: str | None = None
    error: str | None = None
    stage: Stage | None = None
    code: str | None = None
    skipped: bool = False  # already stored: same bytes, same id, not processed again

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, file: str | None, kind: Kind, err: IngestError, doc_id: str | None = None) -> Outcome:
        return cls(file=file, kind=kind, id=doc_id, error=err.message, stage=err.stage, code=err.code)


# ------------------------------------------------------------------- the stages


def extract_text(data: bytes, *, filename: str | None, settings: Settings) -> tuple[str, list[str], str]:
    """Stage 1: bytes -> (text, flags, extractor). Raises IngestError(stage="extract")."""
    try:
        doc = extract_document(data, filename=filename, settings=settings)
    except ExtractionError as e:
        raise IngestError("extract", e.code, str(e), http_status=e.http_status) from e
    return doc.text, list(doc.flags), doc.extractor


def standardize(text: str, kind: Kind, standardizer: Standardizer) -> CVProfile | JDProfile:
    """Stage 2: text -> profile. Raises IngestError(stage="standardize")."""
    try:
        return standardizer.standardize_cv(text) if kind == "cv" else standardizer.standardize_jd(text)
    except StandardizationError as e:
        raise IngestError("standardize", "standardization_failed", str(e)) from e


def prepare(
    data: bytes,
    *,
    kind: Kind,
    filename: str | None,
    settings: Settings,
    standardizer: Standardizer,
    doc_id: str | None = None,
) -> Prepared:
    """Extract and standardize one document (the CPU part of ingest)."""
    doc_id = doc_id or document_id(data)
    text, flags, extractor = extract_text(data, filename=filename, settings=settings)
    profile = standardize(text, kind, standardizer)
    provenance = standardizer.provenance.model_copy(update={"extractor": extractor})
    return Prepared(doc_id, kind, filename, text, profile, provenance, flags)


def embed(prepared: Sequence[Prepared], embedder: Embedder) -> list[CVRecord | JDRecord]:
    """Embed a batch of prepared documents in one encoder call."""
    if not prepared:
        return []
    try:
        vectors = embedder.embed_sections([p.section_texts() for p in prepared])
    except (RuntimeError, ValueError) as e:
        raise IngestError("embed", "embedding_failed", str(e)) from e
    return [p.to_record(v) for p, v in zip(prepared, vectors)]


def write(records: Sequence[CVRecord | JDRecord], store: Store) -> None:
    """Store a batch of records idempotently (merge on id)."""
    cvs = [r for r in records if isinstance(r, CVRecord)]
    jds = [r for r in records if isinstance(r, JDRecord)]
    if cvs:
        store.upsert_cvs(cvs)
    if jds:
        store.upsert_jds(jds)


# ------------------------------------------------------------------ in-process


class Ingestor:
    """Ingest documents in this process: the laptop path and the building block of the others."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        standardizer: Standardizer,
        embedder: Embedder,
    ) -> None:
        self.settings = settings
        self.store = store
        self.standardizer = standardizer
        self.embedder = embedder

    @classmethod
    def from_settings(cls, settings: Settings, *, data_dir: str | None = None) -> Ingestor:
        embedder = Embedder.from_settings(settings)
        return cls(
            settings=settings,
            store=Store(data_dir or settings.data_dir, dim=embedder.dim),
            standardizer=make_standardizer(settings),
            embedder=embedder,
        )

    def _exists(self, kind: Kind, doc_id: str) -> bool:
        return self.store.has_cv(doc_id) if kind == "cv" else self.store.has_jd(doc_id)

    def ingest(
        self,
        files: Iterable[tuple[str | None, bytes]],
        *,
        kind: Kind = "cv",
        batch_size: int = 32,
        on_progress=None,
    ) -> list[Outcome]:
        """Ingest ``(name, bytes)`` pairs; one failed document never stops the others.

        Documents already stored (same bytes) are not processed again. Embedding and
        writes are batched; ``on_progress(n_done)`` is called after each document.
        """
        outcomes: list[Outcome] = []
        pending: list[tuple[Outcome, Prepared]] = []
        seen: set[str] = set()  # the same bytes twice in one call are processed once

        def flush() -> None:
            if not pending:
                return
            try:
                write(embed([p for _, p in pending], self.embedder), self.store)
            except IngestError as e:
                for outcome, _ in pending:
                    outcome.error, outcome.stage, outcome.code = e.message, e.stage, e.code
            pending.clear()

        for name, data in files:
            doc_id = document_id(data)
            outcome = Outcome(file=name, kind=kind, id=doc_id)
            outcomes.append(outcome)
            if doc_id in seen or self._exists(kind, doc_id):
                outcome.skipped = True
            else:
                try:
                    prepared = prepare(
                        data, kind=kind, filename=name, settings=self.settings,
                        standardizer=self.standardizer, doc_id=doc_id,
                    )
                    pending.append((outcome, prepared))
                    seen.add(doc_id)
                except IngestError as e:
                    outcome.error, outcome.stage, outcome.code = e.message, e.stage, e.code
                    logger.info("document %s failed at %s: %s", doc_id, e.stage, e.code)
            if len(pending) >= batch_size:
                flush()
            if on_progress is not None:
                on_progress(len(outcomes))
        flush()
        return outcomes

    def ingest_one(self, data: bytes, *, kind: Kind = "cv", filename: str | None = None) -> Outcome:
        return self.ingest([(filename, data)], kind=kind)[0]
