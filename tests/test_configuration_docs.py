"""docs/configuration.md lists every settings field of both services with its environment variable and flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from http_bridge.__main__ import parse_args
from http_bridge.settings import BridgeSettings
from inference_service.server.settings import ServiceSettings

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
NO_FLAG = {"api_keys"}  # secrets stay off the command line (visible in the process list)


def row(env_var: str) -> str:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("|") and f"`{env_var}`" in line]
    assert len(rows) == 1, f"{env_var}: expected one row in {DOC.name}, found {len(rows)}"
    return rows[0]


@pytest.mark.parametrize("name", list(ServiceSettings.model_fields))
def test_service_setting_documented(name: str) -> None:
    line = row(f"ORTSERVE_{name.upper()}")
    assert f"`--{name.replace('_', '-')}`" in line


@pytest.mark.parametrize("name", list(BridgeSettings.model_fields))
def test_bridge_setting_documented_with_its_flag(name: str) -> None:
    line = row(f"ORTSERVE_BRIDGE_{name.upper()}")
    flags = vars(parse_args([]))
    if name in NO_FLAG:
        assert name not in flags
    else:
        assert name in flags, f"no --{name.replace('_', '-')} flag for BridgeSettings.{name}"
        assert f"`--{name.replace('_', '-')}`" in line
