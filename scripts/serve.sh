#!/usr/bin/env bash
# Start the inference service and the HTTP bridge on 127.0.0.1; Ctrl-C (or SIGTERM) stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
INFERENCE_PORT="${INFERENCE_PORT:-50051}"
BRIDGE_PORT="${BRIDGE_PORT:-8000}"
BIN=.venv/bin

# Something already listening (another `make serve`?) would answer the readiness check below for us.
for port in "$INFERENCE_PORT" "$BRIDGE_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is in use (another \`make serve\`?): stop it, or set INFERENCE_PORT / BRIDGE_PORT" >&2
    exit 1
  fi
done

pids=()
stop() {
  trap - INT TERM EXIT
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

"$BIN/python" -m inference_service serve --model "${ORTSERVE_MODEL:-default}" --port "$INFERENCE_PORT" \
  --log-format "${ORTSERVE_LOG_FORMAT:-text}" &
pids+=($!)
"$BIN/python" -m http_bridge --inference-target "127.0.0.1:$INFERENCE_PORT" --port "$BRIDGE_PORT" \
  --log-format "${ORTSERVE_LOG_FORMAT:-text}" &
pids+=($!)

for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$BRIDGE_PORT/health/ready" >/dev/null 2>&1; then
    echo "ortserve is ready: OpenAI API http://127.0.0.1:$BRIDGE_PORT/v1, playground http://127.0.0.1:$BRIDGE_PORT/, gRPC 127.0.0.1:$INFERENCE_PORT. Ctrl-C stops it."
    break
  fi
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || break 2 # it failed to start: its status, below, ends the script
  done
  sleep 1
done
wait -n "${pids[@]}"
