#!/usr/bin/env bash
# Screenshot of a batch's flow-run page in the Prefect UI:
#   starts `facerecon ui` on a free port, runs a small batch of data/photos against it,
#   opens the flow run's page in headless Chromium and saves the PNG.
#
#   bash scripts/ui_screenshot.sh [OUT_PNG]          (default: docs/prefect_ui_flow_run.png)
#
# tests/test_ui_browser.py does the same as a test (task names and artifacts must be visible).
# Needs chromium (or chromium-browser / google-chrome) on PATH; CHROMIUM=/path/to/binary overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_PNG="${1:-docs/prefect_ui_flow_run.png}"
PY=.venv/bin/python
BROWSER="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}"
if [[ -z "$BROWSER" ]]; then
  echo "ui_screenshot: no chromium found (install it, e.g. apt-get install chromium, or set CHROMIUM=...)" >&2
  exit 2
fi

WORK=$(mktemp -d)
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
.venv/bin/facerecon ui --port "$PORT" >"$WORK/ui.log" 2>&1 &
UI_PID=$!
trap 'kill $UI_PID 2>/dev/null; wait $UI_PID 2>/dev/null; rm -rf "$WORK"' EXIT
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
for _ in $(seq 1 120); do
  curl -fsS "$PREFECT_API_URL/health" >/dev/null 2>&1 && break
  kill -0 $UI_PID 2>/dev/null || { cat "$WORK/ui.log" >&2; exit 1; }
  sleep 1
done

SETS=()
for s in align.output_size=128 pose_sweep.image_size=64 profile.image_size=64 ae_optimize.steps=2 \
         export.mesh_resolution=32 export.render_size=64 export.texture_size=64 export.turntable_frames=3 \
         "cache.dir=$WORK/cache"; do
  SETS+=(--set "$s")
done
.venv/bin/facerecon run data/photos "$WORK/out" --no-progress "${SETS[@]}"

RUN_ID=$($PY - <<'EOF'
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.sorting import FlowRunSort

with get_client(sync_client=True) as c:
    runs = c.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["reconstruct-batch"])),
                            sort=FlowRunSort.START_TIME_DESC, limit=1)
    print(runs[0].id)
EOF
)
URL="http://127.0.0.1:$PORT/runs/flow-run/$RUN_ID"
mkdir -p "$(dirname "$OUT_PNG")"
"$BROWSER" --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1440,1000 \
  --disable-quic --no-first-run --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$WORK/chromium" \
  --virtual-time-budget=20000 --screenshot="$OUT_PNG" "$URL" >/dev/null 2>&1
echo "flow run page: $URL"
echo "screenshot:    $OUT_PNG"
