"""GPU check: the vLLM batch path on Ray Data, engines sharing one GPU, 8B-shaped model.

    python benchmarks/gpu_check.py [OUT_DIR] [--cvs 256] [--engines 2] [--gpu-share 0.5]
                                   [--memory-utilization 0.4] [--batch-size 32]

For a machine with a CUDA GPU, vLLM (GPU build) and Ray installed, run from the repository
root; it needs nothing from the network. It:

1. builds a Llama with the shape of Llama-3-8B (hidden 4096, 32 layers, 32 heads / 8 KV
   heads, intermediate 14336, vocab 128256), random bf16 weights, on the GPU, and saves it
   with a byte-level tokenizer trained here into ``OUT_DIR/llama-8b-random`` (kept for the
   next run);
2. makes N synthetic CVs;
3. runs :class:`VLLMStandardizer` as a Ray Data stage: ``map_batches`` over an actor pool
   of ``--engines`` actors, each asking for ``num_gpus=--gpu-share`` (0.5: two engines on
   one GPU) with ``gpu_memory_utilization=--memory-utilization`` (0.4 each leaves room for
   both);
4. prints CVs/s and generated tokens/s from the moment the first engine is ready to the last
   batch (engine start is shown apart), and how many profiles validated.

Random weights make no sense of the CVs; the grammar still makes every finished output
valid JSON, so the numbers measure the serving path at the real model's size.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

logger = logging.getLogger("gpu_check")

LLAMA_8B_SHAPE = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
}

_CORPUS = [
    '{"contact":{"name":"Jane Doe","email":"jane.doe@example.com","phone":"+1 555 0100","links":[]},',
    '"skills":[{"name":"Python","category":null,"mentions":["python"],"sections":["skills"]}],',
    '"experience":[{"title":"Data Engineer","company":"Acme","start":"2019-03","end":null,"current":true}],',
    "Senior software engineer with 8 years of experience in Python, SQL, Docker and Kubernetes.",
    "Responsibilities: build data pipelines, mentor junior engineers, deploy services on AWS.",
]
_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_model(dest: Path) -> Path:
    """Save an 8B-shaped random bf16 Llama and a byte-level BPE tokenizer into ``dest``."""
    if (dest / "config.json").is_file() and any(dest.glob("*.safetensors")):
        return dest
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_CORPUS * 8, trainers.BpeTrainer(
        vocab_size=2048, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = _CHATML
    # The model's vocabulary is the real 128k (the LM head dominates decode cost); ids past
    # the tokenizer's are never allowed by the grammar, as with any padded vocabulary.
    config = LlamaConfig(**LLAMA_8B_SHAPE, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
                         bos_token_id=None, tie_word_embeddings=False)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):  # initializing 8B parameters on the CPU takes many minutes
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    tmp = dest.with_name(dest.name + ".partial")
    model.save_pretrained(tmp, max_shard_size="5GB")
    fast.save_pretrained(tmp)
    del model
    torch.cuda.empty_cache()
    tmp.rename(dest)
    logger.warning("built %s in %.0fs", dest, time.perf_counter() - t0)
    return dest


def synthetic_cvs(n: int, seed: int = 0) -> list[str]:
    """``n`` varied, fictional CV texts."""
    rng = np.random.default_rng(seed)
    skills = ["Python", "SQL", "Docker", "Kubernetes", "AWS", "Java", "React", "Spark", "Terraform", "Go",
              "PostgreSQL", "Airflow", "TypeScript", "Linux", "Kafka"]
    titles = ["Data Engineer", "Backend Engineer", "Platform Engineer", "ML Engineer", "Analyst"]
    cvs = []
    for i in range(n):
        picked = ", ".join(rng.choice(skills, size=6, replace=False))
        t1, t2 = rng.choice(titles, size=2, replace=False)
        y = int(rng.integers(2012, 2020))
        cvs.append(
            f"Candidate {i}\n{t1}\ncandidate{i}@mail.example.org | +1 555 01{i % 100:02d}\n\n"
            f"Summary\n{t1} with experience in {picked}.\n\nSkills\n{picked}\n\n"
            f"Experience\n{t1}, Company {i} - Jan {y + 3} - Present\n- Built services with {picked}.\n"
            f"{t2}, Other Co - Mar {y} - Dec {y + 2}\n- Maintained pipelines and dashboards.\n\n"
            f"Education\nBSc Computer Science, Example University, {y - 1}\n"
        )
    return cvs


class StandardizeStage:
    """Ray Data stage: one vLLM engine per actor, built once; ``__call__`` only transforms."""

    def __init__(self, model: str, max_model_len: int, max_tokens: int, gpu_memory_utilization: float) -> None:
        from cvmatch_ray.standardize.llm import VLLMStandardizer

        self.std = VLLMStandardizer(model=model, max_model_len=max_model_len, max_tokens=max_tokens,
                                    gpu_memory_utilization=gpu_memory_utilization, dtype="bfloat16")
        self.std.load()
        self.ready_at = time.time()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from cvmatch_ray.schemas import CVProfile

        out = self.std.standardize_cvs([str(t) for t in batch["text"]])
        stats = self.std.last_stats
        n = len(out)
        return {
            "id": batch["id"],
            "ok": np.array([isinstance(p, CVProfile) for p in out]),
            "profile_json": np.array([p.model_dump_json() if isinstance(p, CVProfile) else "" for p in out],
                                     dtype=object),
            "error": np.array(["" if isinstance(p, CVProfile) else str(p) for p in out], dtype=object),
            # Token counts come per engine call; spread evenly so the column sums to the total.
            "completion_tokens": np.full(n, stats.completion_tokens / max(n, 1)),
            "prompt_tokens": np.full(n, stats.prompt_tokens / max(n, 1)),
            "ready_at": np.full(n, self.ready_at),
            "done_at": np.full(n, time.time()),
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path, nargs="?", default=Path("/tmp/cvmatch-gpu-check"))
    ap.add_argument("--cvs", type=int, default=256)
    ap.add_argument("--engines", type=int, default=2)
    ap.add_argument("--gpu-share", type=float, default=0.5)
    ap.add_argument("--memory-utilization", type=float, default=0.4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-model-len", type=int, default=8192)
    ap.add_argument("--max-tokens", type=int, default=1024)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import ray

    model = build_model(args.out_dir / "llama-8b-random")
    # PYTHONPATH: the actors import cvmatch_ray from this checkout even if it is not installed.
    ray.init(include_dashboard=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}})
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus < args.engines * args.gpu_share:
        raise SystemExit(f"needs {args.engines * args.gpu_share} GPUs, the cluster has {gpus}")

    def pipeline(n: int, seed: int) -> ray.data.Dataset:
        rows = [{"id": i, "text": t} for i, t in enumerate(synthetic_cvs(n, seed))]
        return ray.data.from_items(rows).map_batches(
            StandardizeStage,
            fn_constructor_kwargs={"model": str(model), "max_model_len": args.max_model_len,
                                   "max_tokens": args.max_tokens,
                                   "gpu_memory_utilization": args.memory_utilization},
            batch_size=args.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=args.engines),
            num_gpus=args.gpu_share,
        )

    t0 = time.time()
    result = pipeline(args.cvs, seed=0).to_pandas()
    wall_s = time.time() - t0
    # Throughput from the first engine ready to the last batch done: engine start (weights,
    # CUDA graphs) is a one-off cost, not what a long ingest run sees.
    seconds = float(result["done_at"].max() - result["ready_at"].min())
    start_s = float(result["ready_at"].max() - t0)
    ok = int(result["ok"].sum())
    gen = float(result["completion_tokens"].sum())
    prompt = float(result["prompt_tokens"].sum())
    lines = [
        "| engines x GPU share | mem util | CVs | seconds | CVs/s | gen tok/s | prompt tok/s | valid | engines up s | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {args.engines} x {args.gpu_share} | {args.memory_utilization} | {args.cvs} | {seconds:.1f} | "
        f"{args.cvs / seconds:.2f} | {gen / seconds:.0f} | {prompt / seconds:.0f} | {ok}/{args.cvs} | {start_s:.0f} | {wall_s:.0f} |",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    errors = result.loc[~result["ok"], "error"].head(3).tolist()
    if errors:
        sys.stdout.write("first errors: " + " | ".join(errors) + "\n")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
