"""Constrained decoding with llguidance: a constraint compiles to a grammar, each choice runs its own matcher.

A matcher is advanced by every token the sequence samples and gives, before each sample, the set of tokens that
keep the output a prefix of the grammar's language (engine/lm_head.py and engine/sampler.py apply it). EOS is in
that set only where the language accepts; once the grammar is complete (`stopped`) the choice ends at once, as
sampling EOS, the only token then allowed, would.

Compilation is bounded (llguidance's parser limits, a cap on the source's size, and a time limit in the async
front) and cached: a grammar is compiled once and each new choice gets a copy of the compiled matcher.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import llguidance
import llguidance.numpy
import numpy as np

from inference_service.engine.errors import InvalidRequestError
from inference_service.engine.types import Constraint, ConstraintKind

MAX_SOURCE_BYTES = 256 * 1024  # a schema, regex or grammar longer than this is refused before compiling
CACHE_ENTRIES = 256


# llguidance's limits, tightened where its defaults allow seconds of work: grammar size and lexer states bound
# compile time and memory (~1-2 kB per lexer state); per-step fuel bounds the time of one mask
def _limits() -> llguidance.LLParserLimits:
    return llguidance.LLParserLimits(
        max_grammar_size=200_000, max_lexer_states=100_000, initial_lexer_fuel=1_000_000, verbose_errors=False
    )


COMPACT_JSON: Any = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}
_FLEXIBLE: Any = {"whitespace_flexible": True}


class Matcher:
    """One choice's position in its grammar."""

    def __init__(self, matcher: llguidance.LLMatcher, vocab_size: int, tokenizer_vocab: int) -> None:
        self._m = matcher
        self._vocab = vocab_size
        self._bits = llguidance.numpy.allocate_token_bitmask(1, tokenizer_vocab)

    def allowed(self) -> np.ndarray:
        """bool [vocab]: the tokens that may come next. Raises RuntimeError when the matcher is in error."""
        llguidance.numpy.fill_next_token_bitmask(self._m, self._bits, 0)
        if self._m.is_error():
            raise RuntimeError(f"grammar matcher error: {self._m.get_error()}")
        bits = np.unpackbits(self._bits[0].view(np.uint8), bitorder="little")
        if bits.shape[0] < self._vocab:  # the model's rows may be wider than the tokenizer's vocabulary
            bits = np.pad(bits, (0, self._vocab - bits.shape[0]))
        return bits[: self._vocab].astype(bool)

    def consume(self, token: int) -> None:
        if not self._m.consume_token(token):
            raise RuntimeError(f"grammar matcher refused token {token}: {self._m.get_error()}")

    @property
    def stopped(self) -> bool:
        """The output is complete: nothing but EOS may follow."""
        return self._m.is_stopped()


class Grammar:
    """A compiled constraint; `matcher()` starts a choice at its beginning."""

    def __init__(self, compiled: llguidance.LLMatcher, vocab_size: int, tokenizer_vocab: int) -> None:
        self._compiled = compiled
        self._vocab = vocab_size
        self._tokenizer_vocab = tokenizer_vocab

    def matcher(self) -> Matcher:
        return Matcher(self._compiled.deep_copy(), self._vocab, self._tokenizer_vocab)


class GrammarCompiler:
    """Compiles constraints for one model's tokenizer. Thread-safe: the async front compiles in worker threads."""

    def __init__(self, tokenizer_file: Path, eos_token_ids: tuple[int, ...], vocab_size: int) -> None:
        self._tokenizer_file = tokenizer_file
        self._eos = list(eos_token_ids)
        self.vocab_size = vocab_size  # the width of the model's logit rows
        self._tokenizer: llguidance.LLTokenizer | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, llguidance.LLMatcher | str] = OrderedDict()  # grammar → matcher or error

    def _llg_tokenizer(self) -> llguidance.LLTokenizer:
        with self._lock:  # built on first use: ~0.4 s for a 49k vocabulary, ~3 s for 262k
            if self._tokenizer is None:
                text = self._tokenizer_file.read_text(encoding="utf-8")
                self._tokenizer = llguidance.LLTokenizer(text, n_vocab=None, eos_token=self._eos)
            return self._tokenizer

    def compile(self, constraint: Constraint, param: str = "constraint") -> Grammar:
        """The constraint's grammar, from the cache or compiled now; InvalidRequestError naming the problem."""
        grammar = to_grammar(constraint, param)
        with self._lock:
            cached = self._cache.get(grammar)
            if cached is not None:
                self._cache.move_to_end(grammar)
        if cached is None:
            cached = self._compile(grammar)
            with self._lock:
                self._cache[grammar] = cached
                while len(self._cache) > CACHE_ENTRIES:
                    self._cache.popitem(last=False)
        if isinstance(cached, str):
            raise InvalidRequestError(f"invalid {constraint.kind.value} constraint: {cached}", param=param)
        return Grammar(cached, self.vocab_size, self._llg_tokenizer().vocab_size)

    def _compile(self, grammar: str) -> llguidance.LLMatcher | str:
        tokenizer = self._llg_tokenizer()
        matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0, limits=_limits())
        if matcher.is_error():
            return _one_line(matcher.get_error())
        return matcher


def _one_line(error: str) -> str:
    """The compiler's message on one line (a regex error spans several), at most 500 characters."""
    text = " ".join(line.strip() for line in error.strip().splitlines() if line.strip())
    return text[:500] or "rejected by the grammar compiler"


def parse_json(source: str, param: str) -> Any:
    """JSON text from a request (a schema, a choice list), or InvalidRequestError naming `param`."""
    try:
        return json.loads(source)
    except ValueError as e:
        raise InvalidRequestError(f"{param} is not valid JSON: {e}", param=param) from None
    except RecursionError:
        raise InvalidRequestError(f"{param} is JSON nested too deeply", param=param) from None


def to_grammar(constraint: Constraint, param: str = "constraint") -> str:
    """The llguidance grammar (JSON text) for a constraint; the source's shape is checked here, its content by the
    compiler."""
    if len(constraint.source.encode()) > MAX_SOURCE_BYTES:
        raise InvalidRequestError(
            f"the {constraint.kind.value} constraint is longer than {MAX_SOURCE_BYTES} bytes", param=param
        )
    whitespace = _FLEXIBLE if constraint.whitespace_flexible else COMPACT_JSON
    kind = constraint.kind
    if kind is ConstraintKind.JSON_OBJECT:
        return llguidance.LLMatcher.grammar_from_json_schema({"type": "object"}, overrides=whitespace)
    if kind is ConstraintKind.JSON_SCHEMA:
        schema = parse_json(constraint.source, param)
        if not isinstance(schema, dict):
            raise InvalidRequestError("a JSON schema must be an object", param=param)
        return llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=whitespace)
    if kind is ConstraintKind.REGEX:
        return llguidance.LLMatcher.grammar_from_regex(constraint.source)
    if kind is ConstraintKind.LARK:
        return llguidance.LLMatcher.grammar_from_lark(constraint.source)
    choices = parse_json(constraint.source, param)
    if not (isinstance(choices, list) and choices and all(isinstance(c, str) and c for c in choices)):
        raise InvalidRequestError("choice needs a non-empty list of non-empty strings", param=param)
    alternatives = " | ".join(json.dumps(c) for c in dict.fromkeys(choices))
    return llguidance.LLMatcher.grammar_from_lark(f"start: {alternatives}\n")
