"""Build llama.cpp's `llama-server` from the llama-cpp-python sdist into an ignored cache folder (on demand)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

log = logging.getLogger(__name__)

SDIST_VERSION = "0.3.36"
CACHE_DIR = Path(__file__).resolve().parent / ".cache"

# /proc/cpuinfo flag -> ggml CMake option. Only flags the CPU advertises are enabled; AMX never is (it faults here).
ISA_OPTIONS = {
    "avx": "GGML_AVX",
    "avx2": "GGML_AVX2",
    "fma": "GGML_FMA",
    "f16c": "GGML_F16C",
    "avx512f": "GGML_AVX512",
    "avx512_vnni": "GGML_AVX512_VNNI",
    "avx512_vbmi": "GGML_AVX512_VBMI",
    "avx512_bf16": "GGML_AVX512_BF16",
    "avx_vnni": "GGML_AVX_VNNI",
}
ALWAYS_OFF = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16", "GGML_NATIVE", "LLAMA_CURL", "BUILD_SHARED_LIBS")


def cpu_flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cmake_options(flags: set[str], commit: str) -> list[str]:
    """Explicit ISA switches (no -march=native), static, no curl/OpenSSL/UI download, OpenMP as upstream defaults."""
    options = [f"-D{option}={'ON' if flag in flags else 'OFF'}" for flag, option in ISA_OPTIONS.items()]
    options += [f"-D{option}=OFF" for option in ALWAYS_OFF]
    options += [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DGGML_OPENMP=ON",
        "-DLLAMA_OPENSSL=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_UI=OFF",
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        f"-DLLAMA_BUILD_COMMIT={commit}",
    ]
    return options


def vendored_commit(changelog: str, version: str = SDIST_VERSION) -> str:
    """The llama.cpp commit that llama-cpp-python's CHANGELOG names for `version` ("unknown" if none)."""
    section = re.search(rf"^## \[{re.escape(version)}\]\s*$(.*?)(?=^## \[|\Z)", changelog, re.MULTILINE | re.DOTALL)
    found = re.search(r"ggml-org/llama\.cpp@([0-9a-f]{7,40})", section.group(1)) if section else None
    return found.group(1) if found else "unknown"


def source_dir(cache: Path = CACHE_DIR) -> Path:
    return cache / f"llama_cpp_python-{SDIST_VERSION}"


def binary_path(cache: Path = CACHE_DIR) -> Path:
    return cache / "llama-build" / "bin" / "llama-server"


def llama_commit(cache: Path = CACHE_DIR) -> str:
    changelog = source_dir(cache) / "CHANGELOG.md"
    return vendored_commit(changelog.read_text()) if changelog.exists() else "unknown"


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    log.info("$ %s", " ".join(argv))
    subprocess.run(argv, check=True, env=env, timeout=3 * 3600)


def ensure_llama_server(cache: Path = CACHE_DIR, jobs: int = 2) -> Path:
    """Download + extract the sdist, configure and build only `llama-server`; each step is skipped when done."""
    binary = binary_path(cache)
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"llama_cpp_python-{SDIST_VERSION}.tar.gz"
    if not sdist.exists():
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
              f"llama-cpp-python=={SDIST_VERSION}", "-d", str(cache)])  # fmt: skip
    src = source_dir(cache)
    if not src.exists():
        with tarfile.open(sdist) as tar:
            tar.extractall(cache, filter="data")
    llama_src = src / "vendor" / "llama.cpp"
    build = binary.parent.parent
    # the sdist has no .git: stop CMake's git probe from finding (and reporting) this repository's HEAD instead
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(cache)}
    options = cmake_options(cpu_flags(Path("/proc/cpuinfo").read_text()), llama_commit(cache))
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    _run(["cmake", "-S", str(llama_src), "-B", str(build), *generator, *options], env=env)
    _run(["cmake", "--build", str(build), "--target", "llama-server", f"-j{jobs}"], env=env)
    if not binary.exists():
        raise RuntimeError(f"build finished but {binary} is missing")
    return binary


def server_version(binary: Path) -> str:
    """First informative line of `llama-server --version` (e.g. "version: 1 (0c1e57098)")."""
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("version")]
    return lines[0].strip() if lines else "unknown"
