"""The official OpenAI Node SDK (tests/e2e/node, `make node-deps`) against the real stack, via `node --test`."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import MODEL_ID, AuthBridge, Stack, run_node_tests

pytestmark = pytest.mark.e2e


def test_node_sdk(stack: Stack, auth_bridge: AuthBridge) -> None:
    env = {
        "BASE_URL": stack.base_url,
        "AUTH_BASE_URL": auth_bridge.base_url,
        "API_KEY": auth_bridge.key,
        "MODEL": MODEL_ID,
    }
    run_node_tests("openai.test.mjs", env)


def test_node_sdk_structured_outputs(stack: Stack) -> None:
    run_node_tests("structured.test.mjs", {"BASE_URL": stack.base_url, "MODEL": MODEL_ID})
