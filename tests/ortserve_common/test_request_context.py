"""The request-id rule both services share: what a caller's id may be, and a fresh one otherwise."""

from __future__ import annotations

import pytest

from ortserve_common.request_context import choose_request_id


@pytest.mark.parametrize(
    ("header", "kept"),
    [("abc-1.2_3", True), ("a" * 64, True), ("a" * 65, False), ("x y", False), ("", False)],
)
def test_choose_request_id(header: str, kept: bool) -> None:
    chosen = choose_request_id(header)
    assert (chosen == header) == kept
    assert choose_request_id(None) != choose_request_id(None)
