"""Text -> profile: the Standardizer interface, the rule-based backend and (later) the LLM ones."""

from cvmatch_ray.standardize.base import (
    StandardizationError,
    Standardizer,
    standardize_cvs,
    standardize_jds,
)
from cvmatch_ray.standardize.factory import make_standardizer

__all__ = ["StandardizationError", "Standardizer", "make_standardizer", "standardize_cvs", "standardize_jds"]
