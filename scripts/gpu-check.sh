#!/usr/bin/env bash
# The GPU check on a bare GPU machine (Python 3.12, CUDA 13 libraries, no registry): join and install what
# scripts/gpu-stage.sh packed, put the model in the cache, then run `python -m bench gpu` (which exits non-zero on a
# failure). Writes docs/benchmarks-gpu.md, and copies it and the logs to $OUT when that is set.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE_DIR="${GPU_STAGE_DIR:-/tmp/ortserve-stage}"
SITE=/tmp/ortserve-site
export ORTSERVE_CACHE_DIR="${ORTSERVE_CACHE_DIR:-/tmp/ortserve-cache}"
PY="${PYTHON:-python3}"
if [ ! -d "$SITE/onnxruntime" ]; then
  mkdir -p "$STAGE_DIR/pack"
  cat "$STAGE_DIR"/part-* | tar -C "$STAGE_DIR/pack" -xf -
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$STAGE_DIR"/pack/wheels/*.whl
  mkdir -p "$ORTSERVE_CACHE_DIR/gguf" && cp "$STAGE_DIR"/pack/gguf/*.gguf "$ORTSERVE_CACHE_DIR/gguf/"
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
# onnxruntime-gpu's CUDA EP loads libcublas/libcudnn/…: from the CUDA 13 pip packages the machine's Python holds
nv=$("$PY" -c "import os, nvidia; print(os.path.dirname(list(nvidia.__path__)[0]))" 2>/dev/null || true)
if [ -n "$nv" ]; then
  libs=$(find "$nv/nvidia" -maxdepth 3 -type d -name lib | tr '\n' ':')
  export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:-}"
fi
"$PY" -c "import onnxruntime as o; print(o.__file__, o.__version__, o.get_available_providers())"
rc=0
PYTHONUNBUFFERED=1 "$PY" -m bench gpu --device "${GPU_CHECK_DEVICE:-cuda}" "$@" || rc=$?
if [ -n "${OUT:-}" ]; then
  cp docs/benchmarks-gpu.md "$OUT/" 2>/dev/null || true
  tar -C bench/.cache -czf "$OUT/gpu-logs.tgz" gpu-logs 2>/dev/null || true
fi
exit $rc
