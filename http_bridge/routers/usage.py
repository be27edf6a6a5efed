"""GET /usage under every base of the public API: per-key usage by day (admin keys only; accounts/usage.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from http_bridge.accounts.usage import UsagePage, days_between, usage_page
from http_bridge.deps import AccountingDep, require_admin

router = APIRouter(tags=["usage"], dependencies=[Depends(require_admin)])


@router.get("/usage")
async def read_usage(
    accounting: AccountingDep,
    start_date: Annotated[str | None, Query(description="first UTC day, YYYY-MM-DD (default today)")] = None,
    end_date: Annotated[str | None, Query(description="last UTC day, inclusive (default start_date)")] = None,
    api_key_name: Annotated[str | None, Query(description="only this key name")] = None,
    model: Annotated[str | None, Query(description="only this model")] = None,
) -> UsagePage:
    days = days_between(start_date, end_date)
    return usage_page(days, await accounting.counters.usage(days), api_key_name, model)
