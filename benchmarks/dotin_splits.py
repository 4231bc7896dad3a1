"""The dotin resume NER documents and their fixed splits, defined once for the extractor's
training script (``scripts/train_extractor.py``) and its accuracy benchmark
(``bench_parse_accuracy.py``).

- ``heldout``: the documents listed in ``splits/dotin_heldout.txt``; never trained on.
- ``dev``: the rest whose stable hash bucket (sha1 of ``"dev:<id>"``, 0..99) is below 20;
  for model choices (``train_extractor.py --dev`` trains without them).
- ``all``: every document.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

HELDOUT = Path(__file__).resolve().parent / "splits" / "dotin_heldout.txt"


def load_docs(data: Path) -> list[dict]:
    """The dotin documents from a data folder, the dotin folder or the file."""
    for cand in (data, data / "dotin_train.jsonl", data / "dotin_resume_ner" / "dotin_train.jsonl"):
        if cand.is_file():
            with cand.open(encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
    raise SystemExit(f"no dotin_train.jsonl under {data}")


def heldout_ids() -> set[str]:
    return {ln.strip() for ln in HELDOUT.read_text().splitlines() if ln.strip() and not ln.startswith("#")}


def in_dev(doc_id: str) -> bool:
    """Whether a document outside the held-out split is in the dev split (a hash, not a draw)."""
    return int(hashlib.sha1(f"dev:{doc_id}".encode()).hexdigest(), 16) % 100 < 20


def select(docs: list[dict], split: str) -> list[dict]:
    """The documents of a named split: ``heldout``, ``dev``, ``train`` (neither) or ``all``."""
    if split == "all":
        return docs
    held = heldout_ids()
    if split == "heldout":
        return [d for d in docs if str(d["id"]) in held]
    rest = [d for d in docs if str(d["id"]) not in held]
    if split == "dev":
        return [d for d in rest if in_dev(str(d["id"]))]
    if split == "train":
        return [d for d in rest if not in_dev(str(d["id"]))]
    raise ValueError(f"unknown split {split!r}")
