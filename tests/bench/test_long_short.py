"""The long-prompt + short-prompts scenario: its summary and the section it writes into docs/benchmarks.md."""

from __future__ import annotations

from bench.long_short import HEADER, LongShortPlan, LongShortRun, render, summary_row
from bench.report import LONG_SHORT_TITLE, section_of, splice_section
from bench.stats import RequestResult

PAGE = "# Benchmarks\n\n## Absolute figures\n\nrows\n\n## Observations\n\nnotes\n\n## How to run\n\nmake bench\n"


def request(start: float, first: float | None, end: float, prompt_tokens: int = 94) -> RequestResult:
    return RequestResult(start=start, end=end, first_token=first, prompt_tokens=prompt_tokens)


def test_summary_counts_short_first_tokens_before_the_long_one_and_errors() -> None:
    long = request(0.0, 20.0, 21.0, prompt_tokens=6500)
    shorts = [request(float(i), i + 0.5, i + 1.0) for i in range(1, 5)]
    shorts.append(request(5.0, 25.0, 26.0))  # first token after the long one's
    failed = request(6.0, None, 6.1)
    failed.error = "HTTP 500"
    row = summary_row("ortserve", [LongShortRun(long, [*shorts, failed])])
    assert len(row) == len(HEADER)
    assert row[:4] == ["ortserve", "6,500", "20.0", "21.0"]
    assert row[4] == "500"  # short TTFT p50 over the five that succeeded: 0.5, 0.5, 0.5, 0.5, 20 s
    assert row[6] == "20,000"
    assert row[7:] == ["4 / 6", "1"]


def test_the_section_is_inserted_before_how_to_run_then_replaced_in_place() -> None:
    plan = LongShortPlan()
    first = render(plan, [["ortserve"] + ["1"] * 8], "python -m bench long-short", "today", ["quiet machine"])
    assert first.startswith(LONG_SHORT_TITLE + "\n")
    page = splice_section(PAGE, LONG_SHORT_TITLE, first)
    assert page.index(LONG_SHORT_TITLE) > page.index("## Observations")
    assert page.index(LONG_SHORT_TITLE) < page.index("## How to run")
    assert section_of(page, LONG_SHORT_TITLE).strip() == first.strip()
    second = render(plan, [["ortserve"] + ["2"] * 8], "python -m bench long-short", "later", ["busy machine"])
    again = splice_section(page, LONG_SHORT_TITLE, second)
    assert again.count(LONG_SHORT_TITLE) == 1 and "busy machine" in again and "quiet machine" not in again
    assert splice_section(again, LONG_SHORT_TITLE, "") == PAGE  # removing it gives the page back
    assert section_of(PAGE, LONG_SHORT_TITLE) == ""
