"""The cost of constrained decoding: `python -m bench.constrained [--model-dir DIR] [--steps 40]`.

Three measurements on the default model (docs/benchmarks.md, "Constrained decoding"):
1. masks: llguidance's per-token mask (median and p95 µs) while a valid output is walked, per grammar kind;
2. head: the logits a constrained row needs from a screened pass with k allowed tokens — the exact logits of the k
   against the masked screen (greedy and top-k rows) and the full head (rows sampling the whole distribution) —
   to place lm_head.FEW_ALLOWED and MAX_CANDIDATES;
3. engine: decode steps of 16 rows, all free, half constrained (a grammar that never ends, so every row decodes
   every step), and 1 row free against constrained: ms per step, i.e. what a constrained row costs its batch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as HFTokenizer

from inference_service.engine.constraints import GrammarCompiler
from inference_service.engine.core import EngineCore
from inference_service.engine.lm_head import ScreenedRows, _only
from inference_service.engine.loader import load_runner
from inference_service.engine.runner import ModelRunner, RunnerOptions
from inference_service.engine.scheduler import SchedulerConfig
from inference_service.engine.tokenizer import Tokenizer
from inference_service.engine.tool_calls import tool_call_constraint
from inference_service.engine.types import (
    ChatMessage,
    Constraint,
    ConstraintKind,
    GenerationRequest,
    SamplingParams,
    StoppingParams,
    Tool,
    Tools,
)
from inference_service.models import paths
from inference_service.models.folder import load_model_config

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "email": {"type": "string", "pattern": "^[a-z]+@[a-z]+\\.com$"},
        "tags": {"type": "array", "items": {"enum": ["admin", "user", "guest"]}, "maxItems": 3},
    },
    "required": ["name", "age", "email", "tags"],
}
WALKS = {
    "json_schema": (
        Constraint(ConstraintKind.JSON_SCHEMA, json.dumps(SCHEMA)),
        '{"name":"Ada Lovelace","age":36,"email":"ada@math.com","tags":["admin","user"]}',
    ),
    "json_object": (Constraint(ConstraintKind.JSON_OBJECT), '{"title":"Notes","items":[1,2,{"deep":[true,null]}]}'),
    "regex": (Constraint(ConstraintKind.REGEX, "[0-9]{3}-[0-9]{4} [A-Z][a-z]+"), "555-1234 Smith"),
    "tools auto (free text)": (
        tool_call_constraint(Tools((Tool("get_weather", "", {"type": "object"}),))),
        "The weather in Paris is mild today, with light rain in the afternoon and clear skies by evening.",
    ),
}


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def masks(compiler: GrammarCompiler, hf: HFTokenizer) -> None:
    print("## masks: µs per token while walking a valid output (llguidance fill + unpack to a bool row)")
    print("| grammar | tokens | median µs | p95 µs | compile ms (first) |\n|---|---|---|---|---|")
    for name, (constraint, text) in WALKS.items():
        start = time.perf_counter()
        grammar = compiler.compile(constraint)
        compile_ms = (time.perf_counter() - start) * 1e3
        times = []
        for _ in range(5):
            m = grammar.matcher()
            for token in hf.encode(text, add_special_tokens=False).ids:
                t0 = time.perf_counter()
                allowed = m.allowed()
                times.append((time.perf_counter() - t0) * 1e6)
                assert allowed[token], (name, token)
                m.consume(token)
        tokens = len(times) // 5
        print(f"| {name} | {tokens} | {statistics.median(times):.0f} | {_pct(times, 95):.0f} | {compile_ms:.1f} |")


def head(runner: ModelRunner, steps: int) -> None:
    """The ways a screened row with k allowed tokens gets the logits its choice needs."""
    rows = runner.forward(np.array([[42]], np.int64), np.array([1]), 0)
    assert isinstance(rows, ScreenedRows), "this measurement needs the screened head (the default CPU model)"
    lower, upper, hidden = rows.lower[0], rows.upper[0], rows.hidden[0]
    rng = np.random.default_rng(0)

    def screen(ids: np.ndarray) -> None:  # masked bounds → the tokens that can still win → their exact logits
        low = _only(lower, ids)
        rows.head.exact(hidden, np.flatnonzero(_only(upper, ids) >= low.max()))

    def ms(fn: Callable[[], object]) -> str:
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return f"{statistics.median(times):.3f}"

    print("\n## head: ms for the logits a constrained row needs, with k allowed tokens (screened pass)")
    print("| k allowed | exact logits of the k | masked screen + exact candidates (greedy / top-k) | full head |")
    print("|---|---|---|---|")
    full = ms(lambda: rows.head.full(rows.hidden[:1]))
    for k in (1, 8, 64, 256, 1024, 4096, 16384):
        ids = np.sort(rng.choice(lower.shape[0], k, replace=False))
        exact, masked = ms(partial(rows.head.exact, hidden, ids)), ms(partial(screen, ids))
        print(f"| {k} | {exact} | {masked} | {full} |")


def engine(model_dir: Path, steps: int) -> None:
    config = load_model_config(model_dir)
    tokenizer = Tokenizer.from_dir(model_dir)
    options = RunnerOptions(device="cpu", num_slots=16, slot_capacity=512, cache_dir=paths.cache_dir())
    runner = load_runner(config, options)
    compiler = GrammarCompiler(model_dir / "tokenizer.json", config.eos_token_ids, config.vocab_size)
    strings = {"type": "array", "items": {"type": "string"}}
    endless = compiler.compile(Constraint(ConstraintKind.JSON_SCHEMA, json.dumps(strings)))
    prompt = tokenizer.encode(tokenizer.apply_chat_template([ChatMessage("user", "List some words as JSON.")]))
    print("\n## engine: ms per decode step (rows decoding every step; grammar: an array of strings, never closed)")
    print("| rows | free | constrained | ms per step (median) | vs all free |\n|---|---|---|---|---|")
    base: dict[int, float] = {}
    for rows, constrained in ((1, 0), (1, 1), (16, 0), (16, 8), (16, 16)):
        core = EngineCore(runner, tokenizer, config.eos_token_ids, SchedulerConfig(max_batched_tokens=2048))
        for i in range(rows):
            core.add_request(
                GenerationRequest(
                    f"r{i}",
                    prompt,
                    SamplingParams(temperature=1.0, seed=i),
                    StoppingParams(max_tokens=steps + 10, ignore_eos=True),
                    grammar=endless if i < constrained else None,
                )
            )
        while any(s.num_generated == 0 for s in core.scheduler.running.values()) or core.scheduler.waiting:
            core.step()  # prefill
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            core.step()
            times.append((time.perf_counter() - t0) * 1e3)
        for i in range(rows):
            core.abort_request(f"r{i}")
        ms = statistics.median(times)
        base.setdefault(rows, ms)
        print(f"| {rows} | {rows - constrained} | {constrained} | {ms:.2f} | {ms / base[rows]:.2f}× |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.constrained", description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=paths.default_model_dir("fp32"))
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args(argv)
    config = load_model_config(args.model_dir)
    compiler = GrammarCompiler(args.model_dir / "tokenizer.json", config.eos_token_ids, config.vocab_size)
    masks(compiler, HFTokenizer.from_file(str(args.model_dir / "tokenizer.json")))
    options = RunnerOptions(device="cpu", num_slots=1, slot_capacity=64, cache_dir=paths.cache_dir())
    head(load_runner(config, options), args.steps)
    engine(args.model_dir, args.steps)


if __name__ == "__main__":
    main()
