"""Usage reports: the days asked for, read from the counter store, in the shape of OpenAI's usage API (buckets of
one UTC day, one result per key name and model). Shared by `GET /v1/usage` and `python -m http_bridge usage`."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel

from http_bridge.accounts.counters import UsageRow, utc_day
from http_bridge.errors import BridgeError

MAX_DAYS = 366
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class UsageResult(BaseModel):
    object: Literal["usage.completions.result"] = "usage.completions.result"
    api_key_name: str
    model: str
    num_model_requests: int
    input_tokens: int
    output_tokens: int


class UsageBucket(BaseModel):
    object: Literal["bucket"] = "bucket"
    date: str
    start_time: int
    end_time: int
    results: list[UsageResult]


class UsagePage(BaseModel):
    object: Literal["page"] = "page"
    data: list[UsageBucket]
    has_more: bool = False
    next_page: str | None = None


def _date(value: str | None, param: str, default: dt.date) -> dt.date:
    if value is None:
        return default
    try:
        if not _DATE.fullmatch(value):
            raise ValueError(value)
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BridgeError(
            f"Invalid '{param}': expected a date as YYYY-MM-DD.", status=400, type="invalid_request_error", param=param
        ) from None


def days_between(start: str | None, end: str | None) -> list[str]:
    """Every UTC day from `start` to `end` (inclusive; both default to today, `end` to `start`)."""
    first = _date(start, "start_date", dt.date.fromisoformat(utc_day()))
    last = _date(end, "end_date", first if start is not None else dt.date.fromisoformat(utc_day()))
    if last < first:
        raise BridgeError(
            "Invalid 'end_date': it is before start_date.", status=400, type="invalid_request_error", param="end_date"
        )
    count = (last - first).days + 1
    if count > MAX_DAYS:
        raise BridgeError(
            f"Invalid 'end_date': at most {MAX_DAYS} days per request.",
            status=400,
            type="invalid_request_error",
            param="end_date",
        )
    return [(first + dt.timedelta(days=i)).isoformat() for i in range(count)]


def usage_page(
    days: Sequence[str], rows: Sequence[UsageRow], key_name: str | None = None, model: str | None = None
) -> UsagePage:
    buckets = []
    for day in days:
        start = int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp())
        results = [
            UsageResult(
                api_key_name=row.key_name,
                model=row.model,
                num_model_requests=row.requests,
                input_tokens=row.prompt_tokens,
                output_tokens=row.completion_tokens,
            )
            for row in rows
            if row.day == day and key_name in (None, row.key_name) and model in (None, row.model)
        ]
        buckets.append(UsageBucket(date=day, start_time=start, end_time=start + 86_400, results=results))
    return UsagePage(data=buckets)
