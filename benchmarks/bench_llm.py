"""LLM standardization throughput on CPU: one batched engine call vs one CV at a time.

    python benchmarks/bench_llm.py /work/shared/data [--n 8] [--models tiny,smollm2]

Reads the first N resumes of ``livecareer_resumes/texts.jsonl`` under the data path, and
for each model (the tiny random Llama and SmolLM2-135M-Instruct, both built offline by
``tests/llm_fixtures.py``) standardizes them twice with :class:`VLLMStandardizer`: one
call for the whole batch, then one call per CV (the baseline). Prints a table: seconds,
CVs/s, generated tokens/s, valid profiles, and the batch's speed-up over the baseline.

Needs vLLM (scripts/install_vllm_cpu.sh). The engine start is timed separately and not in
either mode. Numbers on a shared 2-core machine move with its load; compare ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

logger = logging.getLogger("bench_llm")


def load_cvs(data: Path, n: int, max_chars: int) -> list[str]:
    """The first ``n`` resume texts, each cut to ``max_chars``."""
    path = data / "livecareer_resumes" / "texts.jsonl"
    texts = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            texts.append(json.loads(line)["text"][:max_chars])
            if len(texts) == n:
                break
    return texts


def run_mode(std, texts: list[str], batched: bool) -> dict:
    """Standardize ``texts`` in one call or one by one; return timing and token counts."""
    from cvmatch_ray.schemas import CVProfile

    started = time.perf_counter()
    tokens = prompt = 0
    calls = [texts] if batched else [[t] for t in texts]
    out = []
    for call in calls:
        out.extend(std.standardize_cvs(call))
        tokens += std.last_stats.completion_tokens
        prompt += std.last_stats.prompt_tokens
    seconds = time.perf_counter() - started
    valid = sum(isinstance(p, CVProfile) for p in out)
    return {"seconds": seconds, "tokens": tokens, "prompt": prompt, "valid": valid}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="the shared data folder (holds livecareer_resumes/)")
    ap.add_argument("--n", type=int, default=8, help="CVs per run")
    ap.add_argument("--models", default="tiny,smollm2")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--max-chars", type=int, default=2500, help="CV text cut (keeps prompts comparable)")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "cvmatch-llm-models")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from llm_fixtures import build_smollm2, build_tiny_llama, set_cpu_vllm_env

    set_cpu_vllm_env()
    from cvmatch_ray.standardize.llm import VLLMStandardizer

    texts = load_cvs(args.data, args.n, args.max_chars)
    builders = {"tiny": lambda: build_tiny_llama(args.cache_dir / "tiny-llama-s0"),
                "smollm2": lambda: build_smollm2(args.cache_dir / "smollm2-135m-instruct")}
    rows = []
    for name in args.models.split(","):
        folder = builders[name]()
        std = VLLMStandardizer(model=str(folder), max_model_len=4096, max_tokens=args.max_tokens,
                               dtype="float32", enforce_eager=True)
        t0 = time.perf_counter()
        std.load()
        std.standardize_cvs(texts[:1])  # warm-up: grammar compile, taxonomy and rules load
        load_s = time.perf_counter() - t0
        base = run_mode(std, texts, batched=False)
        batch = run_mode(std, texts, batched=True)
        std.close()
        for mode, r in (("one at a time", base), (f"batch of {len(texts)}", batch)):
            rows.append((name, mode, len(texts), r["seconds"], len(texts) / r["seconds"], r["tokens"] / r["seconds"],
                         r["prompt"] / r["seconds"], r["tokens"] / len(texts), r["valid"],
                         base["seconds"] / r["seconds"], load_s))

    head = ("model", "mode", "CVs", "seconds", "CVs/s", "gen tok/s", "prompt tok/s", "gen tok/CV", "valid",
            "speed-up", "load+warm s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, mode, n, s, cps, tps, pps, per_cv, valid, ratio, load_s in rows:
        lines.append(f"| {m} | {mode} | {n} | {s:.1f} | {cps:.3f} | {tps:.1f} | {pps:.0f} | {per_cv:.0f} | {valid}/{n} "
                     f"| {ratio:.2f}x | {load_s:.0f} |")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
