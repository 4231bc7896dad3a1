"""Text -> profile: the Standardizer interface, the rule-based backend and (later) the LLM ones."""

from cvmatch_ray.standardize.base import (
    StandardizationError,
    Standardizer,
    make_standardizer,
    standardize_cvs,
    standardize_jds,
)

__all__ = ["StandardizationError", "Standardizer", "make_standardizer", "standardize_cvs", "standardize_jds"]
