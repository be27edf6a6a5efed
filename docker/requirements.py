"""Print an image's runtime requirements from pyproject.toml, so the dependency list has one source of truth.

    python docker/requirements.py bridge         # the HTTP bridge's subset (no onnxruntime, numpy, tokenizers, …)
    python docker/requirements.py inference-cpu  # every dependency, with onnxruntime-gpu swapped for onnxruntime

Standard library only: it runs in a bare python image before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

# What http_bridge and ortserve_common import at run time (grpc, grpc_health, google.rpc, fastapi/starlette, uvicorn,
# pydantic, …).
BRIDGE_PACKAGES = frozenset(
    {
        "grpcio",
        "protobuf",
        "grpcio-health-checking",
        "grpcio-status",
        "fastapi",
        "uvicorn",
        "pydantic",
        "pydantic-settings",
        "prometheus-client",
        "python-json-logger",
        "redis",  # per-key rate limits and usage shared by the bridge replicas
    }
)
# The CPU image takes the CPU build of the same onnxruntime release the GPU build pins.
GPU_RUNTIME, CPU_RUNTIME = "onnxruntime-gpu", "onnxruntime"

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of `-_.` become one `-`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return normalize(match.group(1))


def dependencies(pyproject: Path = PYPROJECT) -> list[str]:
    with pyproject.open("rb") as f:
        deps: list[str] = tomllib.load(f)["project"]["dependencies"]
    return deps


def bridge_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    deps = dependencies(pyproject)
    chosen = [dep for dep in deps if requirement_name(dep) in BRIDGE_PACKAGES]
    missing = BRIDGE_PACKAGES - {requirement_name(dep) for dep in chosen}
    if missing:
        raise SystemExit(f"pyproject.toml has no requirement for {sorted(missing)}")
    return chosen


def cpu_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """All dependencies; onnxruntime-gpu becomes onnxruntime with the same version range, markers dropped."""
    out = []
    for dep in dependencies(pyproject):
        name = requirement_name(dep)
        if name == CPU_RUNTIME:
            continue  # the non-x86_64 alternative: replaced below, unconditionally
        if name == GPU_RUNTIME:
            spec = _NAME.sub("", dep, count=1).split(";", 1)[0].strip()
            dep = f"{CPU_RUNTIME}{spec}"
        out.append(dep)
    if not any(requirement_name(dep) == CPU_RUNTIME for dep in out):
        raise SystemExit(f"pyproject.toml has no {GPU_RUNTIME} requirement to swap")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", choices=["bridge", "inference-cpu"])
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT)
    args = parser.parse_args()
    lines = bridge_requirements(args.pyproject) if args.image == "bridge" else cpu_requirements(args.pyproject)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
