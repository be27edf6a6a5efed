"""Fixtures shared by the deployment tests (nothing here needs Docker)."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy.parsing import COMPOSE_FILE


@pytest.fixture(scope="session")
def compose() -> dict:
    """docker-compose.yml as YAML (anchors and `<<` merges resolved), before variable interpolation."""
    return yaml.safe_load(COMPOSE_FILE.read_text())
