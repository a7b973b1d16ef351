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
# Headless Chromium for the browser tests (the batch report page, the Prefect UI). Best effort:
# without apt-get (or root / passwordless sudo) those tests skip and say why.
if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  if command -v apt-get >/dev/null 2>&1 && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } \
      >/dev/null 2>&1 || echo "setup: apt-get could not install chromium; the browser tests will be skipped" >&2
  else
    echo "setup: no chromium and no apt-get as root; the browser tests will be skipped" >&2
  fi
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
