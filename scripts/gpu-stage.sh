#!/usr/bin/env bash
# Prepare, on a machine that reaches PyPI, what `scripts/gpu-check.sh` needs on a GPU machine that reaches nothing:
# cp312 wheels of what that machine lacks (onnxruntime-gpu is 255 MB) and the default model's GGUF, packed into
# one tar and cut into pieces of at most $PIECE_MIB MiB under .gpu-stage/ (git-ignored), each small enough to travel
# in one call. On the GPU machine, each piece is copied into $GPU_STAGE_DIR (default /tmp/ortserve-stage) while the
# machine stays up; scripts/gpu-check.sh then joins, unpacks and installs them (docs/deployment.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PIECE_MIB="${PIECE_MIB:-56}"
STAGE=.gpu-stage
PY=.venv/bin/python
rm -rf "$STAGE" && mkdir -p "$STAGE/pack/wheels"
# the same versions as this checkout's venv, for Python 3.12 on manylinux x86_64
pins=$("$PY" -m pip freeze | grep -i -E '^(onnxruntime-gpu|gguf|grpcio|grpcio-health-checking|grpcio-reflection|grpcio-status|googleapis-common-protos|protobuf|fastapi|starlette|uvicorn|click|h11|pydantic|pydantic[-_]core|pydantic-settings|python-dotenv|typing-inspection|annotated-types|typing[-_]extensions|python-json-logger|openai|distro|jiter|sniffio|pyyaml)==')
platforms=()
for n in 17 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
# shellcheck disable=SC2086
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" --platform manylinux2014_x86_64 --platform any -d "$STAGE/pack/wheels" $pins
gguf=$("$PY" -c "from inference_service.models import paths; from inference_service.models.pull import pull; print(pull(paths.default_gguf_dir(), progress=False))")
mkdir -p "$STAGE/pack/gguf" && cp "$gguf" "$STAGE/pack/gguf/"
tar -C "$STAGE/pack" -cf - . | split -b "${PIECE_MIB}M" -d - "$STAGE/part-"
rm -rf "$STAGE/pack"
ls -la "$STAGE"
echo "carry each of $STAGE/part-* in its own call: mkdir -p /tmp/ortserve-stage && cp $STAGE/part-* /tmp/ortserve-stage/"
