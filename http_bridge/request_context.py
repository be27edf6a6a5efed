"""Request ids: parsed from or generated for each request, and put on every log line of that request."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


def choose_request_id(header_value: str | None) -> str:
    """The caller's x-request-id when it is sane, else a fresh uuid (hex)."""
    if header_value is not None and _SANE_ID.fullmatch(header_value):
        return header_value
    return uuid.uuid4().hex


def current_request_id() -> str:
    return request_id_var.get()


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record so formats can use %(request_id)s."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True
