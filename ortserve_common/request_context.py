"""Request ids: one rule for what a caller's id may be, and the id of the current request on every log line."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

# What both services accept, log and echo: letters, digits and ._:- (safe in a log line and a header).
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# The bridge keeps a caller's id only up to half of that: a completion's prompts go out as `{id}-{i}`.
BRIDGE_REQUEST_ID_MAX = 64

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


def is_request_id(value: str, max_length: int = 128) -> bool:
    """Whether `value` follows the request-id rule and has at most `max_length` characters."""
    return len(value) <= max_length and REQUEST_ID.fullmatch(value) is not None


def choose_request_id(header_value: str | None) -> str:
    """The caller's x-request-id when it is sane, else a fresh uuid (hex)."""
    if header_value is not None and is_request_id(header_value, BRIDGE_REQUEST_ID_MAX):
        return header_value
    return uuid.uuid4().hex


def current_request_id() -> str:
    return request_id_var.get()


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record so formats can use %(request_id)s."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True
