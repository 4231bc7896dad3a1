"""Train the CV field extractor (a linear-chain CRF) on the dotin resume NER set.

Usage::

    python scripts/train_extractor.py DATA_DIR [--out PATH] [--dev] [--c1 C1] [--c2 C2] [--iterations N]

``DATA_DIR`` is the shared data folder, its ``dotin_resume_ner`` folder or the
``dotin_train.jsonl`` file. The documents listed in ``benchmarks/splits/dotin_heldout.txt``
are never trained on (they are the benchmark's held-out split). Every document with line
breaks is also trained on as a flattened copy (line breaks turned into spaces), so the
model works on text that lost its layout. ``--dev`` trains on the rest minus a fixed dev
split and prints span-level precision / recall / F1 per label on it, for model choices.

Data: github.com/dotin-inc/resume-dataset-NER-annotations (CC0-1.0), paper "Limitations of
Neural Networks-based NER for Resume Data Extraction" (SEPLN, Procesamiento del Lenguaje
Natural 65).
"""

from __future__ import annotations

import argparse
import bisect
import logging
import sys
import time
from pathlib import Path

import pycrfsuite

ROOT = Path(__file__).resolve().parents[1]
# The splits are the benchmark's (benchmarks/dotin_splits.py): defined once, next to the list.
sys.path.insert(0, str(ROOT / "benchmarks"))
from dotin_splits import heldout_ids, load_docs, select  # noqa: E402

from cvmatch_ray.standardize.learned.extractor import DOTIN_TO_FIELD, MODEL_FILE, spans_from_tags
from cvmatch_ray.standardize.learned.features import Token, featurize
from cvmatch_ray.taxonomy import Taxonomy, load_taxonomy

DEFAULT_OUT = ROOT / "cvmatch_ray" / "standardize" / "learned" / MODEL_FILE

logger = logging.getLogger("train_extractor")


def tags_for(doc: dict, tokens: list[Token]) -> list[str]:
    """BIO tags of the tokens from the document's entity spans (first and longest wins on overlap)."""
    tags = ["O"] * len(tokens)
    starts = [t.start for t in tokens]
    ents = sorted(doc["entities"], key=lambda e: (e["start"], -(e["end"] - e["start"])))
    for e in ents:
        label = DOTIN_TO_FIELD.get(e["label"])
        if label is None:
            continue
        i = bisect.bisect_right(starts, e["start"]) - 1
        if i < 0 or tokens[i].end <= e["start"]:
            i += 1
        idx = []
        while i < len(tokens) and tokens[i].start < e["end"]:
            idx.append(i)
            i += 1
        if not idx or any(tags[k] != "O" for k in idx):
            continue
        for n, k in enumerate(idx):
            tags[k] = ("B-" if n == 0 else "I-") + label
    return tags


def sequences(docs: list[dict], tax: Taxonomy, *, flatten: bool) -> list[tuple[list[list[str]], list[str]]]:
    out = []
    for doc in docs:
        texts = [doc["text"]]
        if flatten and "\n" in doc["text"].strip():
            texts.append(doc["text"].replace("\n", " "))  # same offsets, no layout
        for text in texts:
            tokens, feats = featurize(text, tax)
            out.append((feats, tags_for(doc, tokens)))
    return out


def train(seqs: list, out: Path, *, c1: float, c2: float, iterations: int) -> None:
    trainer = pycrfsuite.Trainer(verbose=False)
    for feats, tags in seqs:
        trainer.append(feats, tags)
    trainer.set_params({
        "c1": c1, "c2": c2, "max_iterations": iterations, "feature.possible_transitions": True,
        "feature.minfreq": 2,
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    trainer.train(str(out))


def span_scores(docs: list[dict], model: Path, tax: Taxonomy) -> dict[str, tuple[float, float, float]]:
    """Exact-span precision, recall and F1 per label on ``docs``."""
    tagger = pycrfsuite.Tagger()
    tagger.open(str(model))
    counts: dict[str, list[int]] = {}
    for doc in docs:
        tokens, feats = featurize(doc["text"], tax)
        pred = {(s.label, s.start, s.end) for s in spans_from_tags(doc["text"], tokens, tagger.tag(feats))}
        gold_tags = tags_for(doc, tokens)
        gold = {(s.label, s.start, s.end) for s in spans_from_tags(doc["text"], tokens, gold_tags)}
        for label in {x[0] for x in pred | gold}:
            p = {x for x in pred if x[0] == label}
            g = {x for x in gold if x[0] == label}
            c = counts.setdefault(label, [0, 0, 0])
            c[0] += len(p & g)
            c[1] += len(p - g)
            c[2] += len(g - p)
    out = {}
    for label, (tp, fp, fn) in sorted(counts.items()):
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        out[label] = (p, r, 2 * p * r / (p + r) if p + r else 0.0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--dev", action="store_true", help="hold out a dev split of the training part and score it")
    parser.add_argument("--c1", type=float, default=0.1)
    parser.add_argument("--c2", type=float, default=0.05)
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--no-flatten", action="store_true", help="no flattened copies")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    docs = load_docs(args.data)
    held = heldout_ids()
    train_docs = [d for d in docs if str(d["id"]) not in held]
    logger.info("%d documents, %d held out, %d for training", len(docs), len(docs) - len(train_docs), len(train_docs))
    dev_docs: list[dict] = []
    if args.dev:
        dev_docs, train_docs = select(docs, "dev"), select(docs, "train")
        logger.info("dev split: %d documents, training on %d", len(dev_docs), len(train_docs))
    tax = load_taxonomy()
    t0 = time.perf_counter()
    seqs = sequences(train_docs, tax, flatten=not args.no_flatten)
    logger.info("%d sequences, %d tokens, features in %.1f s", len(seqs), sum(len(s[1]) for s in seqs),
                time.perf_counter() - t0)
    t0 = time.perf_counter()
    train(seqs, args.out, c1=args.c1, c2=args.c2, iterations=args.iterations)
    logger.info("trained in %.1f s: %s (%.1f MB)", time.perf_counter() - t0, args.out, args.out.stat().st_size / 1e6)
    if dev_docs:
        for label, (p, r, f) in span_scores(dev_docs, args.out, tax).items():
            sys.stdout.write(f"{label:<10} P {p:.3f} R {r:.3f} F1 {f:.3f}\n")
        flat = [{**d, "text": d["text"].replace("\n", " ")} for d in dev_docs]
        sys.stdout.write("flattened dev:\n")
        for label, (p, r, f) in span_scores(flat, args.out, tax).items():
            sys.stdout.write(f"{label:<10} P {p:.3f} R {r:.3f} F1 {f:.3f}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
