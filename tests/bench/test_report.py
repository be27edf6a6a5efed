from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from bench.compare import Plan, _order
from bench.llama_build import ALWAYS_OFF, cmake_options, cpu_flags, vendored_commit
from bench.machine import lscpu_model, meminfo_gib
from bench.report import (
    GRPC,
    OURS,
    THEIRS,
    Machine,
    Results,
    cpu_rows,
    plot,
    ratio,
    render_markdown,
    results_from_json,
    target_rows,
)
from bench.servers import parse_proc_stat_cpu, parse_vm_hwm
from bench.stats import Summary


def summary(conc: int, tok_s: float, ttft: float) -> Summary:
    return Summary(concurrency=conc, requests=conc * 2, errors=0, output_tokens=int(tok_s * 10), wall_s=10.0,
                   output_tok_s=tok_s, ttft_p50_ms=ttft, ttft_p95_ms=ttft * 2, itl_p50_ms=20.0, itl_p95_ms=40.0,
                   prompt_tokens_mean=94.0)  # fmt: skip


def results() -> Results:
    machine = Machine("Test CPU", 2, 23.4, "1.31.1 (onnxruntime)", "version: 1 (0c1e570)", "3.11.2", "6.1")
    r = Results(machine=machine, command="python -m bench compare", started="2026-01-01 00:00 UTC", duration_s=600,
                repeats=2, max_tokens=128)  # fmt: skip
    r.runs = {
        OURS: {1: [summary(1, 100, 90), summary(1, 120, 130)], 16: [summary(16, 400, 300), summary(16, 420, 320)]},
        THEIRS: {1: [summary(1, 50, 400), summary(1, 50, 400)], 16: [summary(16, 100, 900), summary(16, 90, 950)]},
        GRPC: {16: [summary(16, 415, 305), summary(16, 425, 308)]},
    }
    r.prefill = {OURS: [400.0, 420.0], THEIRS: [150.0, 160.0]}
    r.prefill_prompt_tokens = {OURS: 998.0, THEIRS: 1001.0}
    r.peak_rss_mib = {OURS: 900.0, THEIRS: 300.0, "ortserve-bridge": 80.0}
    r.cancel_to_free_s = [0.01, 0.02, 0.03]
    r.cpu_s = {
        OURS: {16: {"inference": 20.0, "bridge": 5.0, "client": 2.5}},
        THEIRS: {1: {"llama-server": 8.0, "client": 2.0}},
    }
    r.cpu_tokens = {OURS: {16: 10_000}, THEIRS: {1: 4_000}}
    return r


def test_ratio_handles_missing_values() -> None:
    assert ratio(10, 4) == 2.5
    assert math.isnan(ratio(10, 0)) and math.isnan(ratio(math.nan, 1))


def test_target_rows_compare_medians_against_design_targets() -> None:
    rows = {row[0]: row for row in target_rows(results())}
    single = rows["1 stream, output tok/s"]
    assert single[1:] == ["110.0", "50.0", "2.20×", "≥ 1.2×", "**yes**"]
    sixteen = rows["16 concurrent streams, aggregate tok/s"]
    assert sixteen[3] == "4.32×" and sixteen[5] == "**yes**"  # 410 / 95
    prefill = rows["prefill of ~1,000 tokens, tok/s"]
    assert prefill[3:] == ["2.65×", "≥ 3×", "no"]
    ttft = rows["time to first token, 1 stream (p50), ms"]
    assert ttft[1] == "110.0" and ttft[5] == "no"  # the target is absolute: ≤ 100 ms
    bridge = rows["HTTP bridge ÷ direct gRPC, 16 streams, tok/s"]
    assert bridge[3] == "0.976×" and bridge[5] == "**yes**"
    added = rows["added TTFT p50, bridge − gRPC, 16 streams, ms"]
    assert added[1] == "3.5" and added[5] == "no"


def test_render_markdown_has_tables_machine_and_command() -> None:
    text = render_markdown(results(), "benchmarks.png")
    assert "python -m bench compare" in text
    assert "Test CPU, 2 cores" in text and "onnxruntime 1.31.1" in text and "0c1e570" in text
    assert "| ortserve | 16 | 410.0 (400.0–420.0) |" in text
    assert "![output tok/s vs concurrency](benchmarks.png)" in text
    assert "20.0 / 29.0" in text  # cancel-to-free p50 / p95 in ms


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "plot.png"
    plot(results(), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interleaving_alternates_which_server_goes_first() -> None:
    assert _order(["a", "b"], 0) == ["a", "b"] and _order(["a", "b"], 1) == ["b", "a"]
    assert all(s.requests >= s.concurrency for s in Plan.full().scenarios)
    assert [s.concurrency for s in Plan.full().scenarios] == [1, 4, 16, 32]


def test_cmake_options_enable_only_advertised_isa_and_never_amx() -> None:
    flags = cpu_flags("processor : 0\nflags\t\t: fpu avx avx2 fma f16c amx_tile amx_int8 avx512f\n")
    options = cmake_options(flags, "0c1e570")
    assert "-DGGML_AVX2=ON" in options and "-DGGML_AVX512=ON" in options
    assert "-DGGML_AVX512_VNNI=OFF" in options and "-DGGML_AVX_VNNI=OFF" in options
    for name in ALWAYS_OFF:
        assert f"-D{name}=OFF" in options
    assert not any("AMX" in o and o.endswith("=ON") for o in options)


def test_vendored_commit_reads_the_changelog_section_of_the_version() -> None:
    changelog = "## [Unreleased]\n\n## [0.3.36]\n\n- feat: update llama.cpp to ggml-org/llama.cpp@0c1e57098\n\n" \
        "## [0.3.35]\n\n- feat: update llama.cpp to ggml-org/llama.cpp@4df29be4f\n"  # fmt: skip
    assert vendored_commit(changelog, "0.3.36") == "0c1e57098"
    assert vendored_commit(changelog, "0.3.35") == "4df29be4f"
    assert vendored_commit(changelog, "0.3.1") == "unknown"


def test_proc_parsers() -> None:
    assert parse_vm_hwm("Name:\tx\nVmPeak:\t 9 kB\nVmHWM:\t  2048 kB\n") == 2.0
    with pytest.raises(ValueError):
        parse_vm_hwm("Name:\tx\n")
    assert lscpu_model("Architecture: x86_64\nModel name:   AMD EPYC\n") == "AMD EPYC"
    assert meminfo_gib("MemTotal:       1048576 kB\n") == 1.0


def test_cpu_rows_are_milliseconds_per_output_token() -> None:
    rows = cpu_rows(results())
    assert rows == [
        [OURS, "16", "10,000", "inference 2.00, bridge 0.50, client 0.25"],
        [THEIRS, "1", "4,000", "llama-server 2.00, client 0.50"],
    ]


def test_proc_stat_cpu_reads_utime_plus_stime_past_a_tricky_comm() -> None:
    # comm may contain spaces and parentheses; utime = 250, stime = 50 ticks
    stat = "1234 (we (ird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 0 0"
    assert parse_proc_stat_cpu(stat, 100) == 3.0


def test_results_survive_a_json_round_trip_and_render_the_same() -> None:
    original = results()
    again = results_from_json(json.loads(json.dumps(dataclasses.asdict(original))))
    assert again == original
    assert render_markdown(again, "p.png", "Seen: noise.") == render_markdown(original, "p.png", "Seen: noise.")
    assert "## Observations\n\nSeen: noise." in render_markdown(again, "p.png", "Seen: noise.")
