"""The official OpenAI Node SDK (tests/e2e/node, `make node-deps`) against the real stack, via `node --test`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import MODEL_ID, AuthBridge, Stack

pytestmark = pytest.mark.e2e
NODE_DIR = Path(__file__).parent / "node"


def test_node_sdk(stack: Stack, auth_bridge: AuthBridge) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is required (the machine's Node.js 20+)"
    assert (NODE_DIR / "node_modules" / "openai").is_dir(), "run `make node-deps` (npm ci --prefix tests/e2e/node)"
    env = {
        **os.environ,
        "BASE_URL": stack.base_url,
        "AUTH_BASE_URL": auth_bridge.base_url,
        "API_KEY": auth_bridge.key,
        "MODEL": MODEL_ID,
    }
    result = subprocess.run(
        [node, "--test", "--test-reporter=spec", "openai.test.mjs"],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, f"node --test failed:\n{result.stdout}\n{result.stderr}"
    assert "# fail 0" in result.stdout or "ℹ fail 0" in result.stdout, result.stdout
