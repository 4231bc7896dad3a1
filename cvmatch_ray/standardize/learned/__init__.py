"""Trained field extraction for CV text: a CRF sequence labeller shipped as a small model file.

See ``extractor.FieldExtractor`` for the API and README.md here for the model's data,
licence and how to retrain it.
"""

from cvmatch_ray.standardize.learned.extractor import (
    ExtractorError,
    FieldExtractor,
    Span,
    load_extractor,
)

__all__ = ["ExtractorError", "FieldExtractor", "Span", "load_extractor"]
