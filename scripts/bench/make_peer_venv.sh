#!/usr/bin/env bash
# Optional: a separate venv with the published TrainCheck (PyPI traincheck==0.2.0)
# for side-by-side benchmarks. It cannot share our venv (same package name).
set -euo pipefail
cd "$(dirname "$0")/../.."
PEER=".bench/peer-venv"
if [ ! -x "$PEER/bin/traincheck-collect" ]; then
    python3 -m venv "$PEER"
    "$PEER/bin/python" -m pip install -qq torch==2.13.0 traincheck==0.2.0
fi
echo "$PEER"
