"""The standardizer a configuration names: the one place that knows every backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cvmatch_ray.config import Settings
from cvmatch_ray.standardize.base import Standardizer

if TYPE_CHECKING:
    from cvmatch_ray.standardize.llm import LLMStandardizer


def make_standardizer(settings: Settings) -> Standardizer:
    """The standardizer that ``settings.standardizer`` names.

    Raises:
        StandardizationError: the named backend is not available in this installation.
    """
    if settings.standardizer == "rules":
        # Imported here so that picking an LLM backend never loads the taxonomy twice.
        from cvmatch_ray.standardize.rules import RuleStandardizer

        return RuleStandardizer() if settings.field_extractor == "crf" else RuleStandardizer(extractor=None)
    return make_llm_standardizer(settings)


def make_llm_standardizer(settings: Settings, **overrides: Any) -> LLMStandardizer:
    """The LLM standardizer that ``settings.standardizer`` names ("vllm" or "openai").

    Raises:
        LLMBackendError: the setting names another backend, or the backend is not configured.
    """
    # Imported here: the rules backend never loads the LLM code.
    from cvmatch_ray.standardize.llm import LLMBackendError, VLLMStandardizer
    from cvmatch_ray.standardize.openai_compat import OpenAIStandardizer

    if settings.standardizer == "vllm":
        return VLLMStandardizer.from_settings(settings, **overrides)
    if settings.standardizer == "openai":
        return OpenAIStandardizer.from_settings(settings, **overrides)
    raise LLMBackendError(f"{settings.standardizer!r} is not an LLM backend")
