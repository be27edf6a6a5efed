"""The comparison's results and their rendering as docs/benchmarks.md (pure) and a PNG plot."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import Summary, median, percentile

OURS = "ortserve"
THEIRS = "llama-server"
GRPC = "ortserve-grpc"
LONG_SHORT_TITLE = "## Long prompt + short prompts"  # written by `python -m bench long-short`, kept by compare
SPECULATIVE_TITLE = "## Speculative decoding"  # written by `python -m bench speculative`, kept by compare
CONSTRAINED_TITLE = "## Constrained decoding"  # from `python -m bench.constrained`, kept by compare
SUMMARY_HEADER = (
    "concurrency", "output tok/s", "TTFT p50 ms", "TTFT p95 ms", "ITL p50 ms", "ITL p95 ms", "prompt tokens",
    "requests / errors",
)  # fmt: skip
HOW_TO_RUN = """## How to run

```bash
make bench                                  # = pip install -e '.[dev,bench]' + python -m bench compare
python -m bench compare [--quick] [--repeats N]   # starts and stops both servers itself, rewrites this page
python -m bench build-llama                 # only build bench/.cache/llama-build/bin/llama-server
python -m bench run --url http://127.0.0.1:8000 [--concurrency 1,4,16,32] [--prefill 3]   # any OpenAI server
python -m bench run --grpc 127.0.0.1:50051  # ortserve's inference service, no bridge
python -m bench long-short [--repeats N] [--baseline]   # long prompt + short prompts (fair prefill), its section here
```

`build-llama` downloads the sdist `llama-cpp-python==0.3.36` with `pip download --no-deps --no-binary :all:`, and
builds only the `llama-server` target of its vendored llama.cpp with CMake into `bench/.cache/` (ignored):
GGML_NATIVE off, AVX/AVX2/FMA/F16C and AVX-512/VNNI switched on only where /proc/cpuinfo lists them, every AMX
option off (AMX faults on these machines), static, no curl/OpenSSL. All servers listen on 127.0.0.1 only; every
load loop is bounded by a request count and a deadline."""


@dataclass(slots=True)
class Machine:
    cpu: str
    cores: int
    memory_gib: float
    onnxruntime: str
    llama_cpp: str
    python: str
    kernel: str


@dataclass(slots=True)
class Results:
    """Everything one `python -m bench compare` run measured. `runs[server][concurrency]` holds one Summary per
    repeat; `prefill[server]` one tok/s figure per repeat."""

    machine: Machine
    command: str
    started: str
    duration_s: float
    repeats: int
    max_tokens: int
    runs: dict[str, dict[int, list[Summary]]] = field(default_factory=dict)
    prefill: dict[str, list[float]] = field(default_factory=dict)
    prefill_prompt_tokens: dict[str, float] = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    cancel_to_free_s: list[float] = field(default_factory=list)
    # CPU seconds used by each process (and the load generator, "client") during a server's runs at one concurrency,
    # summed over repeats, and the output tokens of those runs: `cpu_s[server][concurrency][process]`,
    # `cpu_tokens[server][concurrency]`
    cpu_s: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    cpu_tokens: dict[str, dict[int, int]] = field(default_factory=dict)
    load_before: str = ""
    load_after: str = ""
    notes: list[str] = field(default_factory=list)

    def summaries(self, server: str, concurrency: int) -> list[Summary]:
        return self.runs.get(server, {}).get(concurrency, [])

    def metric(self, server: str, concurrency: int, name: str) -> float:
        """Median over repeats of one Summary field."""
        return median([float(getattr(s, name)) for s in self.summaries(server, concurrency)])

    def concurrencies(self, server: str) -> list[int]:
        return sorted(self.runs.get(server, {}))


def results_from_json(data: dict[str, Any]) -> Results:
    """Inverse of `dataclasses.asdict(results)` after a JSON round trip (which turns int keys into strings)."""
    fields = {f.name for f in dataclasses.fields(Results)} - {"machine", "runs", "cpu_s", "cpu_tokens"}
    r = Results(machine=Machine(**data["machine"]), **{k: v for k, v in data.items() if k in fields})
    r.runs = {
        server: {int(c): [Summary(**s) for s in runs] for c, runs in by_conc.items()}
        for server, by_conc in data.get("runs", {}).items()
    }
    r.cpu_s = {s: {int(c): dict(p) for c, p in by_conc.items()} for s, by_conc in data.get("cpu_s", {}).items()}
    r.cpu_tokens = {
        s: {int(c): int(n) for c, n in by_conc.items()} for s, by_conc in data.get("cpu_tokens", {}).items()
    }
    return r


def ratio(ours: float, theirs: float) -> float:
    if math.isnan(ours) or math.isnan(theirs) or theirs == 0:
        return math.nan
    return ours / theirs


def fmt(value: float, digits: int = 1) -> str:
    return "–" if math.isnan(value) else f"{value:,.{digits}f}"


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("**yes**" if ok else "no")


def _check(value: float, target: float, higher_is_better: bool) -> bool | None:
    if math.isnan(value):
        return None
    return value >= target if higher_is_better else value <= target


def target_rows(r: Results) -> list[list[str]]:
    """The project's performance targets (DESIGN.md): [metric, ortserve, llama-server, ratio, target, met]."""
    rows: list[list[str]] = []
    for conc, target in ((1, 1.2), (16, 2.1)):
        ours, theirs = r.metric(OURS, conc, "output_tok_s"), r.metric(THEIRS, conc, "output_tok_s")
        x = ratio(ours, theirs)
        label = "1 stream, output tok/s" if conc == 1 else f"{conc} concurrent streams, aggregate tok/s"
        rows.append([label, fmt(ours), fmt(theirs), f"{fmt(x, 2)}×", f"≥ {target}×", verdict(_check(x, target, True))])
    ours, theirs = median(r.prefill.get(OURS, [])), median(r.prefill.get(THEIRS, []))
    x = ratio(ours, theirs)
    rows.append(["prefill of ~1,000 tokens, tok/s", fmt(ours), fmt(theirs), f"{fmt(x, 2)}×", "≥ 3×",
                 verdict(_check(x, 3.0, True))])  # fmt: skip
    ours, theirs = r.metric(OURS, 1, "ttft_p50_ms"), r.metric(THEIRS, 1, "ttft_p50_ms")
    rows.append(["time to first token, 1 stream (p50), ms", fmt(ours), fmt(theirs), f"{fmt(ratio(ours, theirs), 2)}×",
                 "≤ 100 ms", verdict(_check(ours, 100.0, False))])  # fmt: skip
    bridge, direct = r.metric(OURS, 16, "output_tok_s"), r.metric(GRPC, 16, "output_tok_s")
    x = ratio(bridge, direct)
    rows.append(["HTTP bridge ÷ direct gRPC, 16 streams, tok/s", fmt(bridge), f"{fmt(direct)} (gRPC)", f"{fmt(x, 3)}×",
                 "≥ 0.97×", verdict(_check(x, 0.97, True))])  # fmt: skip
    added = r.metric(OURS, 16, "ttft_p50_ms") - r.metric(GRPC, 16, "ttft_p50_ms")
    rows.append(["added TTFT p50, bridge − gRPC, 16 streams, ms", fmt(added), "–", "–", "≤ 3 ms",
                 verdict(_check(added, 3.0, False))])  # fmt: skip
    added1 = r.metric(OURS, 1, "ttft_p50_ms") - r.metric(GRPC, 1, "ttft_p50_ms")
    if not math.isnan(added1):
        rows.append(["(for reference) added TTFT p50, bridge − gRPC, 1 stream, ms", fmt(added1), "–", "–", "–", "–"])
    return rows


def absolute_rows(r: Results) -> list[list[str]]:
    rows = []
    for server in (OURS, GRPC, THEIRS):
        for conc in r.concurrencies(server):
            runs = r.summaries(server, conc)
            tok_s = [s.output_tok_s for s in runs]
            rows.append([
                server, str(conc), f"{fmt(median(tok_s))} ({fmt(min(tok_s))}–{fmt(max(tok_s))})",
                fmt(r.metric(server, conc, "ttft_p50_ms"), 0), fmt(r.metric(server, conc, "ttft_p95_ms"), 0),
                fmt(r.metric(server, conc, "itl_p50_ms")), fmt(r.metric(server, conc, "itl_p95_ms")),
                fmt(r.metric(server, conc, "prompt_tokens_mean"), 0),
                f"{sum(s.requests for s in runs)} / {sum(s.errors for s in runs)}",
            ])  # fmt: skip
    return rows


def cpu_rows(r: Results) -> list[list[str]]:
    """CPU milliseconds per output token, per process, for every server and concurrency."""
    rows = []
    for server in (OURS, GRPC, THEIRS):
        for conc, tokens in sorted(r.cpu_tokens.get(server, {}).items()):
            if not tokens:
                continue
            spent = r.cpu_s.get(server, {}).get(conc, {})
            parts = [f"{name} {1000 * seconds / tokens:.2f}" for name, seconds in spent.items()]
            rows.append([server, str(conc), f"{tokens:,}", ", ".join(parts)])
    return rows


def _section_bounds(lines: list[str], title: str) -> tuple[int, int] | None:
    """Line range of the `title` section: its heading up to the next `## ` heading."""
    start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == title), None)
    if start is None:
        return None
    return start, next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))


def section_of(page: str, title: str) -> str:
    """The `title` section of `page`, or "" when it has none."""
    lines = page.splitlines(keepends=True)
    bounds = _section_bounds(lines, title)
    return "".join(lines[bounds[0] : bounds[1]]) if bounds else ""


def splice_section(page: str, title: str, section: str) -> str:
    """`page` with its `title` section replaced by `section`; without one, `section` goes before "## How to run" (or
    at the end)."""
    lines = page.splitlines(keepends=True)
    bounds = _section_bounds(lines, title)
    if bounds is None:
        at = next((i for i, line in enumerate(lines) if line.startswith("## How to run")), len(lines))
        bounds = (at, at)
    block = section.rstrip("\n") + "\n\n" if section.strip() else ""
    return "".join(lines[: bounds[0]]) + block + "".join(lines[bounds[1] :])


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(r: Results, plot_name: str, observations: str = "") -> str:
    m = r.machine
    cancel = r.cancel_to_free_s
    other = [
        ["prefill, ~1,000-token prompt, tok/s (median of repeats)"]
        + [f"{fmt(median(r.prefill.get(s, [])))} ({fmt(r.prefill_prompt_tokens.get(s, math.nan), 0)} prompt tokens)"
           for s in (OURS, THEIRS)],
        ["peak RSS of the server process (VmHWM), MiB", fmt(r.peak_rss_mib.get(OURS, math.nan), 0),
         fmt(r.peak_rss_mib.get(THEIRS, math.nan), 0)],
        ["peak RSS of the HTTP bridge process, MiB", fmt(r.peak_rss_mib.get("ortserve-bridge", math.nan), 0), "–"],
        [f"cancel-to-free latency p50 / p95, ms ({len(cancel)} probes)",
         f"{fmt(percentile([c * 1000 for c in cancel], 50))} / {fmt(percentile([c * 1000 for c in cancel], 95))}", "–"],
    ]  # fmt: skip
    parts = [
        "# Benchmarks: ortserve vs llama.cpp's llama-server",
        "",
        "Written by `python -m bench compare` (bench/); do not edit by hand. Not a test, not in CI.",
        "",
        f"Run started {r.started}, took {r.duration_s / 60:.1f} min; {r.repeats} interleaved repeats per scenario.",
        "",
        "```",
        r.command,
        "```",
        "",
        "## Against the project's targets (ratios = ortserve through the HTTP bridge ÷ llama-server)",
        "",
        table(["metric", OURS, THEIRS, "ratio", "target", "met"], target_rows(r)),
        "",
        "## Absolute figures",
        "",
        f"Streaming chat completions, temperature 0, {r.max_tokens} output tokens (`ignore_eos`), a unique system "
        "prompt per request (no prefix cache can help). tok/s = output tokens of all requests ÷ wall time of the "
        "scenario; median over repeats (min–max). TTFT = request sent → first non-empty content chunk; ITL = gap "
        "between consecutive content chunks. `ortserve-grpc` = the same scenario against the inference service's "
        "gRPC API directly (no bridge).",
        "",
        table(["server", *SUMMARY_HEADER], absolute_rows(r)),
        "",
        table(["", OURS, THEIRS], other),
        "",
        "CPU time per output token (user + system from /proc/PID/stat over the runs, repeats summed; "
        f"{r.machine.cores} cores give at most {r.machine.cores * 1000:,} ms of CPU per second):",
        "",
        table(["server", "concurrency", "output tokens", "CPU ms per output token, by process"], cpu_rows(r)),
        "",
        f"![output tok/s vs concurrency]({plot_name})",
        "",
        "## Machine and conditions",
        "",
        f"- CPU: {m.cpu}, {m.cores} cores; memory {m.memory_gib:.1f} GiB; kernel {m.kernel}; Python {m.python}",
        f"- onnxruntime {m.onnxruntime}; llama.cpp {m.llama_cpp}",
        f"- load average before / after: {r.load_before} / {r.load_after}",
    ]
    parts += [f"- {note}" for note in r.notes]
    if observations.strip():
        parts += ["", "## Observations", "", observations.strip()]
    parts += ["", HOW_TO_RUN]
    return "\n".join(parts) + "\n"


def plot(r: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for server, style in ((OURS, "o-"), (GRPC, "s--"), (THEIRS, "^-")):
        concs = r.concurrencies(server)
        if not concs:
            continue
        ys = [r.metric(server, c, "output_tok_s") for c in concs]
        lows = [min(s.output_tok_s for s in r.summaries(server, c)) for c in concs]
        highs = [max(s.output_tok_s for s in r.summaries(server, c)) for c in concs]
        label = {OURS: "ortserve (HTTP bridge)", GRPC: "ortserve (direct gRPC)", THEIRS: "llama-server"}[server]
        (line,) = ax.plot(concs, ys, style, label=label)
        ax.fill_between(concs, lows, highs, alpha=0.15, color=line.get_color())
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 4, 16, 32], labels=["1", "4", "16", "32"])
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("aggregate output tok/s (line: median, band: min–max)")
    ax.set_title(f"SmolLM2-135M Q4_1, {r.max_tokens} output tokens, {r.machine.cores} cores")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
