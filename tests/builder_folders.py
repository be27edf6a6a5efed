"""Model folders made by ONNX Runtime GenAI's model builder from the default model's weights (nothing from a hub).

The builder runs in a venv of its own under the cache dir (tests/models/builder/requirements.txt; ~1.5 min to
create, ~1.3 GB, once). The GGUF becomes a Hugging Face-format folder (tests/models/builder/write_hf.py), which
`python -m onnxruntime_genai.models.builder -i HF -o OUT -p PRECISION -e EP` turns into a GenAI folder (10-15 s each).
Everything is cached by the hash of the recipe; a failure fails the test with the builder's output.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inference_service.models import paths

HERE = Path(__file__).resolve().parent / "models" / "builder"
REQUIREMENTS = HERE / "requirements.txt"
WRITE_HF = HERE / "write_hf.py"
GENAI = "onnxruntime-genai==0.18.0"


def _key(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
    return digest.hexdigest()[:12]


def _run(cmd: list[str], what: str, log: Path) -> None:
    env = {**os.environ, "TQDM_DISABLE": "1"}  # progress bars would fill the log tail a failure shows
    with log.open("w") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        pytest.fail(f"{what} failed (exit {done.returncode}; {log}):\n{tail}")


def builder_python() -> Path:
    venv = paths.cache_dir() / "builder" / f"venv-{_key(REQUIREMENTS.read_bytes(), GENAI)}"
    python = venv / "bin" / "python"
    if (venv / ".installed").exists():
        return python
    for stale in [venv, *venv.parent.glob("venv-*")]:  # this recipe's half-made venv, and older recipes' (1.3 GB each)
        shutil.rmtree(stale, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / "venv-install.log"
    _run([sys.executable, "-m", "venv", str(venv)], "creating the builder venv", log)
    _run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], "installing the builder", log)
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", GENAI], "installing onnxruntime-genai", log)
    (venv / ".installed").touch()
    return python


def builder_folder(gguf: Path, tokenizer_dir: Path, precision: str, provider: str) -> Path:
    """The builder's folder for `-p precision -e provider`, built once and cached."""
    python = builder_python()
    recipe = _key(REQUIREMENTS.read_bytes(), GENAI, WRITE_HF.read_bytes(), gguf.name, str(gguf.stat().st_size))
    root = paths.cache_dir() / "builder"
    out = root / f"{provider}-{precision}-{recipe}"
    if (out / "genai_config.json").exists():
        return out
    _remove_other_recipes(root, recipe)
    hf = root / f"hf-{recipe}"
    if not (hf / "config.json").exists():
        shutil.rmtree(hf, ignore_errors=True)
        _run(
            [str(python), str(WRITE_HF), str(gguf), str(tokenizer_dir), str(hf)],
            "writing the HF folder",
            root / "hf.log",
        )
    work = root / f".{out.name}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    cmd = [str(python), "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(work)]
    cmd += ["-p", precision, "-e", provider, "-c", str(root / "hf-cache")]
    _run(cmd, f"the model builder (-e {provider} -p {precision})", root / f"{out.name}.log")
    work.rename(out)
    return out


def _remove_other_recipes(root: Path, recipe: str) -> None:
    """Folders and logs of earlier recipes (~1 GB each) go when a new recipe builds."""
    for path in root.glob("*-*"):
        if path.name.startswith(("hf-", "cpu-", "cuda-", ".")) and recipe not in path.name:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
