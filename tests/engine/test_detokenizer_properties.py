"""Property tests (hypothesis) of streaming text out of tokens, with the real default model's tokenizer:
random Unicode text split into random token chunks always streams to its full decode, and a stop string never
leaks into the output, not even partially, however the text is chunked."""

from __future__ import annotations

import itertools
from pathlib import Path

import gguf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference_service.engine.detokenizer import IncrementalDetokenizer, StopMatcher
from inference_service.engine.tokenizer import Tokenizer
from inference_service.models.gguf_tokenizer import write_tokenizer_files

# Any code point but surrogates (not encodable), biased towards multi-byte characters and emoji sequences.
ANY_CHAR = st.characters(exclude_categories=["Cs"])
# SmolLM2's byte-level vocabulary has no token for the bytes 0x04 0x06 0x13 0x14 0x16 0x1d (control characters)
# and the UTF-8 lead bytes 0xf1 0xf2 (planes 4-11, unassigned): the tokenizer drops them, so text with those
# characters cannot round-trip through encode/decode. Streaming still equals the full decode for them.
UNENCODABLE = "\x04\x06\x13\x14\x16\x1d"
NOT_IN_TEXT = UNENCODABLE + "\ufffd"  # U+FFFD in the text would hide a partial character in the output
CHARS = st.characters(exclude_categories=["Cs"], exclude_characters=NOT_IN_TEXT, max_codepoint=0x3FFFF)
SPECIAL = st.sampled_from(["é", "東", "🤖", "👨\u200d👩\u200d👧", "\u0301", " ", "\n", "ab"])
TEXT = st.lists(st.one_of(CHARS, SPECIAL), max_size=40).map("".join)
ANY_TEXT = st.lists(st.one_of(ANY_CHAR, SPECIAL), max_size=40).map("".join)
EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def tok(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    out = tmp_path_factory.mktemp("smollm-tok-props")
    write_tokenizer_files(gguf.GGUFReader(gguf_path), out)
    return Tokenizer.from_dir(out)


def split(items: list[int] | str, cuts: list[int]) -> list:
    """`items` cut at the given positions (sorted, deduplicated, clipped)."""
    points = sorted({c % (len(items) + 1) for c in cuts})
    bounds = [0, *points, len(items)]
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


def first_stop(text: str, stops: list[str]) -> int | None:
    """Where the output must end: the stop that ends first (then the longest), as StopMatcher documents."""
    found = [(text.find(s) + len(s), text.find(s)) for s in stops if s and s in text]
    return min(found)[1] if found else None


def stream(tok: Tokenizer, ids: list[int], cuts: list[int], prompt: str) -> list[str]:
    detok = IncrementalDetokenizer(tok, tok.encode(prompt))
    return [*(detok.step(chunk) for chunk in split(ids, cuts)), detok.flush()]


@EXAMPLES
@given(text=TEXT, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30), prompt=TEXT)
def test_streamed_text_equals_full_decode(tok: Tokenizer, text: str, cuts: list[int], prompt: str) -> None:
    ids = tok.encode(text)
    pieces = stream(tok, ids, cuts, prompt)
    assert "".join(pieces) == tok.decode(ids) == text
    assert all("\ufffd" not in piece for piece in pieces)  # never a partial UTF-8 character


@EXAMPLES
@given(text=ANY_TEXT, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30), prompt=ANY_TEXT)
def test_streamed_text_equals_full_decode_any_code_point(
    tok: Tokenizer, text: str, cuts: list[int], prompt: str
) -> None:
    ids = tok.encode(text)
    assert "".join(stream(tok, ids, cuts, prompt)) == tok.decode(ids)


@EXAMPLES
@given(
    text=TEXT,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
    spans=st.lists(st.tuples(st.integers(0, 80), st.integers(1, 6)), max_size=3),
    extra=st.lists(st.text(CHARS, min_size=1, max_size=4), max_size=2),
)
def test_stop_string_never_leaks(text: str, cuts: list[int], spans: list[tuple[int, int]], extra: list[str]) -> None:
    # Stops taken from the text itself (so that they match), plus random ones (which mostly do not).
    stops = [text[a : a + n] for a, n in spans if text[a : a + n]] + extra
    matcher = StopMatcher(stops)
    end = first_stop(text, stops)
    expected = text if end is None else text[:end]
    emitted, matched = "", None
    for chunk in split(text, cuts):
        out, stop = matcher.push(chunk)
        emitted += out
        assert expected.startswith(emitted)  # at every point: nothing past the stop's start, ever
        if stop is not None:
            matched = stop
            break
    if matched is None:
        emitted += matcher.flush()
    assert emitted == expected
    assert (matched is None) == (end is None)


@EXAMPLES
@given(
    text=TEXT,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
    span=st.tuples(st.integers(0, 80), st.integers(1, 5)),
)
def test_tokens_to_text_with_stop(tok: Tokenizer, text: str, cuts: list[int], span: tuple[int, int]) -> None:
    """The whole engine path: token chunks → detokenizer → stop matcher."""
    stop = text[span[0] : span[0] + span[1]]
    matcher, detok = StopMatcher([stop]), IncrementalDetokenizer(tok)
    emitted, matched = "", None
    for chunk in split(tok.encode(text), cuts):
        out, matched = matcher.push(detok.step(chunk))
        emitted += out
        if matched is not None:
            break
    if matched is None:
        out, matched = matcher.push(detok.flush())
        emitted += out + ("" if matched is not None else matcher.flush())
    end = first_stop(text, [stop])
    assert emitted == (text if end is None else text[:end])
