"""Why a document was not processed: the stages, the error codes, and the one error type.

Every code a document can fail with is defined here once, with the stage it normally
arises at. The codes are a stable contract: API error bodies, upload progress, pipeline
``error`` columns and CLI output carry them. How an edge translates them (an HTTP status,
an exit code) is the edge's business: ``serve/http.py`` holds the HTTP table.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """Where in the processing of a document something failed."""

    read = "read"
    extract = "extract"
    standardize = "standardize"
    embed = "embed"
    store = "store"


class ErrorCode(StrEnum):
    """Why a document was not processed; ``stage`` is where each code normally arises."""

    # Extraction (bytes -> text); ``extract/errors.py`` has one exception class per code.
    extraction_failed = "extraction_failed"
    document_too_large = "document_too_large"
    too_many_pages = "too_many_pages"
    archive_too_large = "archive_too_large"
    document_too_complex = "document_too_complex"
    encrypted_document = "encrypted_document"
    no_text_layer = "no_text_layer"
    empty_document = "empty_document"
    unsupported_document_type = "unsupported_document_type"
    corrupt_document = "corrupt_document"
    # Later steps.
    standardization_failed = "standardization_failed"
    embedding_failed = "embedding_failed"
    # Not the document's fault: a backend or storage failed, or the upload was lost.
    internal_error = "internal_error"
    # Its processing ended abnormally (a worker died, a lease ran out) too many times.
    poison_document = "poison_document"

    @property
    def stage(self) -> Stage:
        """The stage this code normally arises at (a code seen at another stage says so itself)."""
        return _STAGE_OF.get(self, Stage.extract)


_STAGE_OF: dict[ErrorCode, Stage] = {
    ErrorCode.standardization_failed: Stage.standardize,
    ErrorCode.embedding_failed: Stage.embed,
    ErrorCode.internal_error: Stage.store,
    ErrorCode.poison_document: Stage.store,
}


class ProcessingError(Exception):
    """A document that could not be processed: the stage that failed, its code and why.

    The message never quotes document content; it may be shown to the client.
    """

    def __init__(self, stage: Stage | str, code: ErrorCode | str, message: str) -> None:
        super().__init__(message)
        self.stage = Stage(stage)
        self.code = ErrorCode(code)
        self.message = message

    def __str__(self) -> str:
        return f"{self.stage}: {self.message}"

    def __reduce__(self):  # keep stage and code when Ray pickles the error across processes
        return (ProcessingError, (self.stage.value, self.code.value, self.message))


class UnknownDocument(LookupError):
    """A JD or CV id that is not in the store."""


__all__ = ["ErrorCode", "ProcessingError", "Stage", "UnknownDocument"]
