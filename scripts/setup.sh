#!/usr/bin/env bash
# Create .venv and install facerecon with everything it needs (CPU). Idempotent: a second run
# only checks. torch is pinned to the CPU build 2.13.0 *first*, and held there with a constraint,
# so no dependency can pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.facerecon-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
echo "torch==2.13.0" > .venv/constraints.txt
.venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -c .venv/constraints.txt -e ".[diffusion,test]" 2>&1 | grep -v '^WARNING: Location' || true
# open_clip ships the CLIP BPE vocabulary the SD tokenizer is built from; its own deps (torchvision)
# would drag in CUDA torch, and we only need the vocabulary file.
.venv/bin/python -m pip install -q --no-deps "open_clip_torch>=2.20" 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c "import torch, facerecon; assert torch.__version__.startswith('2.13.0'), torch.__version__"
echo "$want" > "$stamp"
