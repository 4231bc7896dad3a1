"""The standardizer a configuration names: the one place that knows every backend."""

from __future__ import annotations

from cvmatch_ray.config import Settings
from cvmatch_ray.standardize.base import Standardizer


def make_standardizer(settings: Settings) -> Standardizer:
    """The standardizer that ``settings.standardizer`` names.

    Raises:
        StandardizationError: the named backend is not available in this installation.
    """
    if settings.standardizer == "rules":
        # Imported here so that picking an LLM backend never loads the taxonomy twice.
        from cvmatch_ray.standardize.rules import RuleStandardizer

        return RuleStandardizer()
    from cvmatch_ray.standardize.llm import make_llm_standardizer

    return make_llm_standardizer(settings)
