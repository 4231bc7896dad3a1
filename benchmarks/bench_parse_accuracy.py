"""Field-level accuracy and speed of the rule-based CV parser on the dotin resume NER set.

Usage::

    python benchmarks/bench_parse_accuracy.py DATA_DIR [--limit N] [--json OUT]

``DATA_DIR`` is the shared data folder, its ``dotin_resume_ner`` folder, or the
``dotin_train.jsonl`` file itself. For every resume, each field's gold spans and our
values are normalised (lower case, only ``[a-z0-9+#]`` kept) and compared as sets; the
table shows micro-averaged precision, recall and F1 per field, next to a naive baseline
measured in the same run, and the F1 ratio ours / baseline.

Fields: email (Email Address), name (Name), skills (Tech Tools + Job Specific Skills),
degree (Degree), institution (College Name), companies (Companies worked at), titles
(Designation). Skills are compared as canonical concepts: a gold span the taxonomy knows
counts as its canonical name (so "AWS" and "Amazon Web Services" agree); a predicted skill
that matches a gold *Soft Skills* span is neither right nor wrong (the set labels those
apart, and our skills list does not). Baselines: the first line as the name, the first
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

from cvmatch_ray.schemas import CVProfile
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


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, pred: set[str], gold: set[str], ignore: set[str] = frozenset()) -> None:
        pred = {p for p in pred if p} - (ignore - gold)
        gold = {g for g in gold if g}
        self.tp += len(pred & gold)
        self.fp += len(pred - gold)
        self.fn += len(gold - pred)

    @property
    def p(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def r(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.p * self.r / (self.p + self.r) if self.p + self.r else 0.0


@dataclass
class Run:
    scores: dict[str, Score] = field(default_factory=lambda: {f: Score() for f in FIELDS})
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
        if fname == "skills":
            gold = {_skill_key(tax, g) for g in gold_raw}
            pred = {norm(v) for v in values[fname]}
            soft = {_skill_key(tax, e["text"]) for e in doc["entities"] if e["label"] == "Soft Skills"}
            run.scores[fname].add(pred, gold, ignore=soft)
        else:
            run.scores[fname].add({norm(v) for v in values[fname]}, {norm(g) for g in gold_raw})


def load_docs(data: Path) -> list[dict]:
    """The dotin documents from a data folder, the dotin folder or the file."""
    for cand in (data, data / "dotin_train.jsonl", data / "dotin_resume_ner" / "dotin_train.jsonl"):
        if cand.is_file():
            with cand.open(encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
    raise SystemExit(f"no dotin_train.jsonl under {data}")


def evaluate(docs: Iterable[dict], fn: Callable[[str], dict[str, set[str]]], tax: Taxonomy) -> Run:
    run = Run()
    for doc in docs:
        t0 = time.perf_counter()
        values = fn(doc["text"])
        run.seconds.append(time.perf_counter() - t0)
        score_doc(run, doc, values, tax)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="shared data folder, dotin folder or dotin_train.jsonl")
    parser.add_argument("--limit", type=int, default=0, help="only the first N documents")
    parser.add_argument("--json", type=Path, help="also write the scores here")
    args = parser.parse_args(argv)

    docs = load_docs(args.data)
    if args.limit:
        docs = docs[: args.limit]
    t0 = time.perf_counter()
    tax = load_taxonomy()
    load_s = time.perf_counter() - t0
    rules = RuleStandardizer(taxonomy=tax, today=date(2019, 1, 1))  # the set predates 2019

    rules.standardize_cv(docs[0]["text"])  # warm caches before timing
    ours_run = evaluate(docs, lambda text: ours(rules.standardize_cv(text)), tax)
    base_run = evaluate(docs, lambda text: baseline(text, tax), tax)
    skill_times = []
    for doc in docs:
        t = time.perf_counter()
        tax.find_skills(doc["text"])
        skill_times.append(time.perf_counter() - t)

    out = sys.stdout
    out.write(f"dotin resume NER: {len(docs)} documents; taxonomy load {load_s * 1000:.0f} ms\n\n")
    out.write(f"{'field':<12} {'P':>6} {'R':>6} {'F1':>6}  | {'base P':>6} {'base R':>6} {'base F1':>7} | {'F1 ratio':>8}\n")
    out.write("-" * 76 + "\n")
    result: dict[str, dict[str, float]] = {}
    for fname in FIELDS:
        o, b = ours_run.scores[fname], base_run.scores[fname]
        ratio = o.f1 / b.f1 if b.f1 else float("inf")
        result[fname] = {"p": o.p, "r": o.r, "f1": o.f1, "base_p": b.p, "base_r": b.r, "base_f1": b.f1}
        out.write(f"{fname:<12} {o.p:6.3f} {o.r:6.3f} {o.f1:6.3f}  | {b.p:6.3f} {b.r:6.3f} {b.f1:7.3f} | {ratio:8.2f}x\n")
    ms = [s * 1000 for s in ours_run.seconds]
    sk = [s * 1000 for s in skill_times]
    bms = [s * 1000 for s in base_run.seconds]
    out.write("\n")
    out.write(f"time per doc, rules standardize_cv: mean {statistics.mean(ms):.1f} ms, p50 {statistics.median(ms):.1f} ms, "
              f"p95 {sorted(ms)[int(0.95 * (len(ms) - 1))]:.1f} ms ({1000 / statistics.mean(ms):.0f} docs/s)\n")
    out.write(f"time per doc, find_skills only:     mean {statistics.mean(sk):.2f} ms, p50 {statistics.median(sk):.2f} ms\n")
    out.write(f"time per doc, baseline:             mean {statistics.mean(bms):.1f} ms\n")
    mean_chars = statistics.mean(len(d["text"]) for d in docs)
    out.write(f"mean document length: {mean_chars:.0f} characters\n")
    if args.json:
        args.json.write_text(json.dumps({"fields": result, "ms_mean": statistics.mean(ms)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
