"""Shared fixtures: one bundled embedding model and one Ray instance per test session."""

from __future__ import annotations

import os

# Nothing may be downloaded from a model hub: the bundled MiniLM loads from site-packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
