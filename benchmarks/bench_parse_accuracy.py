"""Field-level accuracy and speed of the CV parser on the dotin resume NER set.

Usage::

    python benchmarks/bench_parse_accuracy.py DATA_DIR [--split heldout|dev|all] [--model PATH] [--limit N] [--json]

``DATA_DIR`` is the shared data folder, its ``dotin_resume_ner`` folder, or the
``dotin_train.jsonl`` file itself. The default split is the fixed held-out one
(``benchmarks/splits/dotin_heldout.txt``), which the field extractor never trained on;
``dev`` is the training part's dev split (``scripts/train_extractor.py --dev``), for model
choices; ``all`` is every document (the extractor trained on most of them).

Three parsers are measured in the same run: ours (the rule-based standardizer with the
trained extractor), rule-only (``RuleStandardizer(extractor=None)``) and a naive regex
baseline. For every resume, each field's gold spans and the parser's values are normalised
(lower case, only ``[a-z0-9+#]`` kept) and compared as sets; the table shows
micro-averaged precision, recall and F1 per field, *exact* (equal keys) and *lenient* (one
key contains the other, both at least 3 characters), and the speed in CVs per second on one
core (CPU time of this single-threaded process, so other load on the machine does not
count). ``--json`` prints one JSON object instead of the table.

Fields: email (Email Address), name (Name), skills (Tech Tools + Job Specific Skills),
degree (Degree), institution (College Name), companies (Companies worked at), titles
(Designation). Skills are compared as canonical concepts: a gold span the taxonomy knows
counts as its canonical name (so "AWS" and "Amazon Web Services" agree); a predicted skill
that matches a gold *Soft Skills* span is neither right nor wrong (the set labels those
apart, and our skills list does not). Baseline: the first line as the name, the first
token with an "@" as the e-mail, every taxonomy alias anywhere with no context rules for
skills, whole lines with a degree / institution / company keyword, and every line that is
a known job title.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from dotin_splits import load_docs, select

from cvmatch_ray.schemas import CVProfile
from cvmatch_ray.standardize.learned import FieldExtractor, load_extractor
from cvmatch_ray.standardize.rules import RuleStandardizer
from cvmatch_ray.standardize.rules.sections import prepare_lines
from cvmatch_ray.taxonomy import Taxonomy, load_taxonomy

FIELDS = {
    "email": ("Email Address",),
    "name": ("Name",),
    "skills": ("Tech Tools", "Job Specific Skills"),
    "degree": ("Degree",),
    "institution": ("College Name",),
    "companies": ("Companies worked at",),
    "titles": ("Designation",),
}


def norm(text: str | None) -> str:
    """The comparison key of a value: lower case, only [a-z0-9+#]."""
    return re.sub(r"[^a-z0-9+#]", "", (text or "").lower())


def _lenient_eq(a: str, b: str) -> bool:
    return a == b or (len(a) >= 3 and len(b) >= 3 and (a in b or b in a))


@dataclass
class Score:
    """Micro counts: predictions that are right, predictions, gold values found, gold values."""

    lenient: bool = False
    right: int = 0
    pred: int = 0
    found: int = 0
    gold: int = 0

    def add(self, pred: set[str], gold: set[str], ignore: set[str] = frozenset()) -> None:
        pred = {p for p in pred if p} - (ignore - gold)
        gold = {g for g in gold if g}
        if self.lenient:
            self.right += sum(any(_lenient_eq(p, g) for g in gold) for p in pred)
            self.found += sum(any(_lenient_eq(p, g) for p in pred) for g in gold)
        else:
            self.right += len(pred & gold)
            self.found += len(pred & gold)
        self.pred += len(pred)
        self.gold += len(gold)

    @property
    def p(self) -> float:
        return self.right / self.pred if self.pred else 0.0

    @property
    def r(self) -> float:
        return self.found / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.p * self.r / (self.p + self.r) if self.p + self.r else 0.0

    def row(self) -> dict[str, float]:
        return {"p": round(self.p, 4), "r": round(self.r, 4), "f1": round(self.f1, 4)}


@dataclass
class Run:
    exact: dict[str, Score] = field(default_factory=lambda: {f: Score() for f in FIELDS})
    lenient: dict[str, Score] = field(default_factory=lambda: {f: Score(lenient=True) for f in FIELDS})
    seconds: list[float] = field(default_factory=list)


def _skill_key(tax: Taxonomy, text: str) -> str:
    return norm(tax.canonical(" ".join(text.split()), allow_blocked=True) or text)


def ours(profile: CVProfile) -> dict[str, set[str]]:
    """Our values per field, as raw strings."""
    return {
        "email": {profile.contact.email or ""},
        "name": {profile.contact.name or ""},
        "skills": {s.name for s in profile.skills},
        "degree": {e.degree or "" for e in profile.education},
        "institution": {e.institution or "" for e in profile.education},
        "companies": {e.company or "" for e in profile.experience},
        "titles": {t for t in profile.titles},
    }


_DEGREE_WORDS = re.compile(r"\b(?:bachelor|master|b\.?tech|b\.?e\.?|m\.?tech|mba|ph\.?d|b\.?sc|m\.?sc|diploma|degree)\b", re.I)
_INSTITUTION_WORDS = re.compile(r"\b(?:university|college|institute|school|academy)\b", re.I)
_COMPANY_WORDS = re.compile(r"\b(?:inc|ltd|llc|limited|corp|corporation|pvt|technologies|solutions|company)\b", re.I)


def baseline(text: str, tax: Taxonomy) -> dict[str, set[str]]:
    """The naive values per field (see the module docstring)."""
    lines = prepare_lines(text)
    email = next((t for t in text.split() if "@" in t), "")
    return {
        "email": {email.strip(".,;:()<>")},
        "name": {lines[0] if lines else ""},
        "skills": {h.canonical for h in tax.find_all_aliases(text)},
        "degree": {ln for ln in lines if _DEGREE_WORDS.search(ln)},
        "institution": {ln for ln in lines if _INSTITUTION_WORDS.search(ln)},
        "companies": {ln for ln in lines if _COMPANY_WORDS.search(ln)},
        "titles": {ln for ln in lines if tax.normalize_title(ln, strict=True)},
    }


def score_doc(run: Run, doc: dict, values: dict[str, set[str]], tax: Taxonomy) -> None:
    for fname, labels in FIELDS.items():
        gold_raw = {e["text"] for e in doc["entities"] if e["label"] in labels}
        ignore: set[str] = set()
        if fname == "skills":
            gold = {_skill_key(tax, g) for g in gold_raw}
            pred = {_skill_key(tax, v) for v in values[fname]}
            ignore = {_skill_key(tax, e["text"]) for e in doc["entities"] if e["label"] == "Soft Skills"}
        else:
            gold = {norm(g) for g in gold_raw}
            pred = {norm(v) for v in values[fname]}
        run.exact[fname].add(pred, gold, ignore)
        run.lenient[fname].add(pred, gold, ignore)


def evaluate(docs: Iterable[dict], fn: Callable[[str], dict[str, set[str]]], tax: Taxonomy) -> Run:
    run = Run()
    for doc in docs:
        t0 = time.process_time()  # CPU time: the speed on one core, whatever else the machine runs
        values = fn(doc["text"])
        run.seconds.append(time.process_time() - t0)
        score_doc(run, doc, values, tax)
    return run


def _table(out, runs: dict[str, Run]) -> None:
    names = list(runs)
    for mode in ("exact", "lenient"):
        out.write(f"\n{mode}: P / R / F1\n{'field':<12}" + "".join(f" | {n:^20}" for n in names) + "\n")
        out.write("-" * (12 + 23 * len(names)) + "\n")
        for fname in FIELDS:
            cells = []
            for n in names:
                sc = getattr(runs[n], mode)[fname]
                cells.append(f" | {sc.p:6.3f} {sc.r:6.3f} {sc.f1:6.3f}")
            out.write(f"{fname:<12}" + "".join(cells) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="shared data folder, dotin folder or dotin_train.jsonl")
    parser.add_argument("--split", choices=("heldout", "dev", "all"), default="heldout")
    parser.add_argument("--model", type=Path, help="an extractor model file instead of the shipped one")
    parser.add_argument("--limit", type=int, default=0, help="only the first N documents")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)

    docs = select(load_docs(args.data), args.split)
    if args.limit:
        docs = docs[: args.limit]
    t0 = time.perf_counter()
    tax = load_taxonomy()
    load_s = time.perf_counter() - t0
    today = date(2019, 1, 1)  # the set predates 2019
    extractor = FieldExtractor(args.model, taxonomy=tax) if args.model else load_extractor()
    ours_std = RuleStandardizer(taxonomy=tax, today=today, extractor=extractor)
    rules_std = RuleStandardizer(taxonomy=tax, today=today, extractor=None)
    ours_std.standardize_cv(docs[0]["text"])  # load the model and warm caches before timing
    runs = {
        "ours": evaluate(docs, lambda text: ours(ours_std.standardize_cv(text)), tax),
        "rule-only": evaluate(docs, lambda text: ours(rules_std.standardize_cv(text)), tax),
        "regex baseline": evaluate(docs, lambda text: baseline(text, tax), tax),
    }
    speed = {n: len(r.seconds) / sum(r.seconds) for n, r in runs.items()}
    ms = {n: 1000 * statistics.mean(r.seconds) for n, r in runs.items()}
    mean_chars = statistics.mean(len(d["text"]) for d in docs)
    if args.json:
        result = {
            "split": args.split, "documents": len(docs), "mean_chars": round(mean_chars),
            "parsers": {
                n: {"exact": {f: r.exact[f].row() for f in FIELDS}, "lenient": {f: r.lenient[f].row() for f in FIELDS},
                    "cvs_per_s": round(speed[n], 1), "ms_mean": round(ms[n], 2)}
                for n, r in runs.items()
            },
        }
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    out = sys.stdout
    out.write(f"dotin resume NER, split {args.split}: {len(docs)} documents, mean {mean_chars:.0f} characters; "
              f"taxonomy load {load_s * 1000:.0f} ms\n")
    _table(out, runs)
    out.write("\nspeed, one core:\n")
    for n in runs:
        out.write(f"  {n:<16} {speed[n]:7.1f} CVs/s  (mean {ms[n]:.1f} ms per CV)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
