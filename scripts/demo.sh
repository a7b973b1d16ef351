#!/usr/bin/env bash
# Install (first time only) and reconstruct the bundled sample photos into out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/facerecon run data/photos out "$@"
