"""The cache directory: one setting (ORTSERVE_CACHE_DIR, `serve --cache-dir`) resolved by models/paths.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import inference_service.__main__ as cli
from inference_service.engine import loader
from inference_service.engine.runner import RunnerOptions
from inference_service.models import convert as convert_module
from inference_service.models import paths
from inference_service.models import pull as pull_module
from inference_service.server.settings import ServiceSettings


@pytest.mark.parametrize(
    ("env", "xdg", "expected"), [("/c", None, "/c"), ("", "/x", "/x/ortserve"), (None, "/x", "/x/ortserve")]
)
def test_cache_dir_from_the_environment(
    env: str | None, xdg: str | None, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (("ORTSERVE_CACHE_DIR", env), ("XDG_CACHE_HOME", xdg)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert paths.cache_dir() == ServiceSettings().cache_dir == Path(expected)
    assert paths.default_gguf_dir() == Path(expected) / "gguf"


def test_home_cache_without_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ORTSERVE_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.cache_dir() == tmp_path / ".cache" / "ortserve"


def test_serve_cache_dir_flag_wins_for_pull_convert_and_derived_graphs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORTSERVE_CACHE_DIR", str(tmp_path / "env"))
    monkeypatch.setattr(cli, "configure_logging", lambda *a, **k: None)
    seen: dict[str, Any] = {}

    def fake_pull(cache_dir: Path, model: Any = None, progress: bool = True) -> Path:
        seen["gguf"] = cache_dir
        return cache_dir / model.file_name

    def fake_convert(gguf: Path, out: Path, **kwargs: Any) -> Path:
        seen["model"] = out
        return out

    def fake_load_model(folder: Path, model_id: str, options: RunnerOptions, *args: Any, **kwargs: Any) -> Any:
        seen["cpu-graphs"] = options.cache_dir
        return SimpleNamespace(model_id=model_id)

    async def fake_serve(settings: Any, models: dict[str, Any]) -> None:
        return None

    monkeypatch.setattr(pull_module, "pull", fake_pull)
    monkeypatch.setattr(convert_module, "convert", fake_convert)
    monkeypatch.setattr(loader, "load_model", fake_load_model)  # the real _load builds the RunnerOptions
    monkeypatch.setattr("inference_service.server.app.serve", fake_serve)
    flag = tmp_path / "flag"
    cli.main(["serve", "--cache-dir", str(flag), "--device", "cpu"])
    assert seen == {
        "gguf": flag / "gguf",
        "model": flag / "models" / "smollm2-135m-instruct",
        "cpu-graphs": flag / "cpu-graphs",
    }
    cli.main(["serve", "--device", "cpu"])  # the environment's, when no flag is given
    assert seen["gguf"] == tmp_path / "env" / "gguf"
