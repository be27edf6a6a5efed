"""docker/requirements.py: the images' dependency lists, derived from pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.deploy.parsing import ROOT, load_script

requirements = load_script("requirements")

# Never in the bridge image (the bridge never imports onnxruntime, tokenizers or numpy: docs/architecture.md).
ENGINE_ONLY = {"onnxruntime", "onnxruntime-gpu", "onnx", "gguf", "tokenizers", "numpy", "jinja2", "tqdm", "llguidance"}


def test_bridge_subset_excludes_the_engine_dependencies() -> None:
    names = {requirements.requirement_name(dep) for dep in requirements.bridge_requirements()}
    assert names == requirements.BRIDGE_PACKAGES
    assert not names & ENGINE_ONLY


def test_bridge_subset_keeps_the_version_ranges_of_pyproject() -> None:
    deps = requirements.dependencies()
    assert set(requirements.bridge_requirements()) <= set(deps)


def test_cpu_list_swaps_onnxruntime_gpu_for_the_same_onnxruntime_range() -> None:
    deps = requirements.dependencies()
    gpu = next(d for d in deps if requirements.requirement_name(d) == "onnxruntime-gpu")
    cpu = requirements.cpu_requirements()
    names = [requirements.requirement_name(d) for d in cpu]
    assert "onnxruntime-gpu" not in names and names.count("onnxruntime") == 1
    swapped = next(d for d in cpu if requirements.requirement_name(d) == "onnxruntime")
    assert ";" not in swapped  # unconditional: the CPU image is CPU on every architecture
    assert swapped.removeprefix("onnxruntime") == gpu.split(";")[0].strip().removeprefix("onnxruntime-gpu")
    assert len(cpu) == len(deps) - 1  # every other dependency is kept


def test_a_bridge_package_missing_from_pyproject_is_an_error(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["grpcio>=1", "fastapi>=0.1"]\n')
    with pytest.raises(SystemExit, match="no requirement for"):
        requirements.bridge_requirements(pyproject)


@pytest.mark.parametrize(("raw", "name"), [("Pydantic_Settings>=2", "pydantic-settings"), ("a.b ; x", "a-b")])
def test_requirement_name_is_normalized(raw: str, name: str) -> None:
    assert requirements.requirement_name(raw) == name


def test_the_cli_prints_one_requirement_per_line() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "requirements.py"), "bridge"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert out == requirements.bridge_requirements()


def test_the_bridge_imports_with_the_engine_packages_unavailable() -> None:
    """What the bridge image holds is enough: every http_bridge and ortserve_common module imports with the
    engine-only packages blocked, and the app builds (a new import of numpy or onnxruntime in the bridge fails here)."""
    blocked = sorted({"onnxruntime", "onnx", "gguf", "tokenizers", "numpy", "jinja2", "tqdm", "grpc_reflection"})
    script = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        BLOCKED = {blocked!r}

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"bridge image has no {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        import http_bridge, ortserve_common
        for package in (http_bridge, ortserve_common):
            for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                importlib.import_module(info.name)
        from http_bridge.app import create_app
        from http_bridge.settings import BridgeSettings
        create_app(BridgeSettings(_env_file=None))
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not leaked, leaked
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
