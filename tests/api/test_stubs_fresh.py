"""The committed gRPC stubs are exactly what the pinned grpcio-tools generates from proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
API = Path("inference_service/api/v1")


def test_generated_stubs_match_protos(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto" / API).glob("*.proto"))
    assert protos, "no .proto files found"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'proto'}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *protos,
        ],
        check=True,
        cwd=ROOT,
    )
    generated = sorted(p.name for p in (tmp_path / API).iterdir())
    committed = sorted(p.name for p in (ROOT / API).iterdir() if p.name != "__init__.py" and p.is_file())
    assert generated == committed, "stub files differ: run `make proto`"
    for name in generated:
        assert (tmp_path / API / name).read_text() == (ROOT / API / name).read_text(), (
            f"{name} is stale: run `make proto`"
        )
