"""Container health probes (exit 0 = healthy), used by the images' HEALTHCHECK and by docker-compose.yml.

    python healthcheck.py grpc [TARGET]  # inference: gRPC health of GenerationService is SERVING (= ready)
    python healthcheck.py http [URL]     # bridge: GET /health/ready answers 200

Defaults come from the same ORTSERVE_* variables the servers read, so a changed port needs no second setting.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 3.0
READY_SERVICE = "inference_service.api.v1.GenerationService"  # each service name reports readiness; "" is liveness


def grpc_ready(target: str) -> str | None:
    """None when SERVING, else why not."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=READY_SERVICE), timeout=TIMEOUT_S
            )
        except grpc.RpcError as exc:
            return f"{target}: {exc.code().name}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"{target}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def http_ready(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:
            return None if reply.status == 200 else f"{url}: HTTP {reply.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("grpc", "http"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "grpc":
        problem = grpc_ready(argv[1] if len(argv) > 1 else f"127.0.0.1:{os.environ.get('ORTSERVE_PORT', '50051')}")
    else:
        port = os.environ.get("ORTSERVE_BRIDGE_PORT", "8000")
        problem = http_ready(argv[1] if len(argv) > 1 else f"http://127.0.0.1:{port}/health/ready")
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
