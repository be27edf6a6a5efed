"""Incremental detokenization (whole characters only) and stop-string matching (never leak a stop)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import gguf
import pytest

from inference_service.engine.detokenizer import IncrementalDetokenizer, StopMatcher
from inference_service.engine.tokenizer import Tokenizer
from inference_service.models.gguf_tokenizer import write_tokenizer_files

MIXED = (
    "Hello, world! Ça va? 東京タワー 👨‍👩‍👧‍👦 naïve café 🏳️‍🌈 1234 ñandú\n"
    "中文测试：你好，世界。 Привет 🤖🚀✨ Zürich\t\tend €"
)


@pytest.fixture(scope="module")
def tok(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    out = tmp_path_factory.mktemp("smollm-tok")
    write_tokenizer_files(gguf.GGUFReader(gguf_path), out)
    return Tokenizer.from_dir(out)


def _random_chunks(ids: list[int], rng: random.Random) -> list[list[int]]:
    chunks, i = [], 0
    while i < len(ids):
        n = rng.choice([1, 1, 1, 2, 3])
        chunks.append(ids[i : i + n])
        i += n
    return chunks


def test_streaming_equals_full_decode(tok: Tokenizer) -> None:
    ids = tok.encode(MIXED)
    prompt = tok.encode("<|im_start|>user\nSay it 🤖<|im_end|>\n<|im_start|>assistant\n")
    rng = random.Random(0)
    for _ in range(50):
        detok = IncrementalDetokenizer(tok, prompt)
        pieces = [detok.step(chunk) for chunk in _random_chunks(ids, rng)]
        pieces.append(detok.flush())
        assert all("\ufffd" not in p for p in pieces)
        assert "".join(pieces) == tok.decode(ids) == MIXED


def test_special_tokens_skipped(tok: Tokenizer) -> None:
    detok = IncrementalDetokenizer(tok)
    ids = [*tok.encode("Hi 🤖"), 2]
    assert "".join(detok.step([i]) for i in ids) == "Hi 🤖"
    shown = IncrementalDetokenizer(tok, skip_special_tokens=False)
    assert "".join(shown.step([i]) for i in ids) == "Hi 🤖<|im_end|>"


def test_partial_character_is_held_until_complete(tok: Tokenizer) -> None:
    ids = tok.encode("🤖")
    detok = IncrementalDetokenizer(tok)
    assert [detok.step([i]) for i in ids] == [""] * (len(ids) - 1) + ["🤖"]


def test_invalid_utf8_at_finish_is_flushed(tok: Tokenizer) -> None:
    ids = tok.encode("ok 🤖")[:-1]  # ends inside the emoji: never completes
    detok = IncrementalDetokenizer(tok)
    text = "".join(detok.step([i]) for i in ids)
    assert text == "ok"
    rest = detok.flush()
    assert rest.startswith(" ") and rest.endswith("\ufffd")
    assert detok.flush() == ""


class _CountingBytes:
    """Fake byte-level tokenizer: id i stands for bytes vocab[i]; counts decoded ids."""

    def __init__(self, vocab: list[bytes]) -> None:
        self.vocab = vocab
        self.max_window = 0

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        self.max_window = max(self.max_window, len(ids))
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")


def test_cost_per_token_is_bounded() -> None:
    text = ("abc é 中 🤖 " * 400).encode()
    fake = _CountingBytes([bytes([b]) for b in range(256)])
    detok = IncrementalDetokenizer(fake, prompt_ids=list(b"prompt " * 100))
    out = "".join(detok.step([b]) for b in text)
    assert out == text.decode()
    assert fake.max_window <= 8  # a 4-byte character plus a little context, however long the sequence


def _stream(matcher: StopMatcher, chunks: Sequence[str]) -> tuple[list[str], str | None]:
    emitted: list[str] = []
    for chunk in chunks:
        text, stop = matcher.push(chunk)
        emitted.append(text)
        if stop is not None:
            return emitted, stop
    emitted.append(matcher.flush())
    return emitted, None


def _reference(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """Earliest-ending stop (ties: longest); what the streamed output must equal."""
    found = [(text.find(s) + len(s), -len(s), s) for s in stops if s in text]
    if not found:
        return text, None
    end, neg_len, stop = min(found)
    return text[: end + neg_len], stop


@pytest.mark.parametrize("stop", ["END", "\n\n", "é!", "🤖x", "a"])
def test_stop_split_at_every_position_never_leaks(stop: str) -> None:
    text = f"some text é {stop} after"
    expected = text[: text.index(stop)]
    for cut1 in range(len(text) + 1):
        for cut2 in range(cut1, len(text) + 1):
            emitted, matched = _stream(StopMatcher([stop]), [text[:cut1], text[cut1:cut2], text[cut2:]])
            assert matched == stop
            assert "".join(emitted) == expected
            # at no point did output run ahead of the text before the stop
            so_far = ""
            for piece in emitted:
                so_far += piece
                assert expected.startswith(so_far)


def test_multiple_stops_first_to_complete_wins() -> None:
    emitted, matched = _stream(StopMatcher(["world", "lo w"]), ["hel", "lo wor", "ld"])
    assert (emitted, matched) == (["he", "l"], "lo w")  # "l" held: it may start "lo w"


def test_stop_that_is_prefix_of_another() -> None:
    # "ab" completes first, so it matches even though "abc" would follow
    assert _stream(StopMatcher(["abc", "ab"]), ["x", "a", "b", "c"]) == (["x", "", ""], "ab")
    text, stop = StopMatcher(["abc", "ab"]).push("xabc")
    assert (text, stop) == ("x", "ab")


def test_include_stop_in_output() -> None:
    matcher = StopMatcher(["</s>"], include_stop_str_in_output=True)
    assert matcher.push("done</") == ("done", None)
    assert matcher.push("s> more") == ("</s>", "</s>")
    assert matcher.push("ignored") == ("", None)


def test_no_stop_flush_returns_everything() -> None:
    matcher = StopMatcher(["STOP", "xyz"])
    emitted, matched = _stream(matcher, ["abc ST", "O", "x", "xy"])
    assert matched is None
    assert emitted[-1] == "xy"  # held back until finish: might have become "xyz"
    assert "".join(emitted) == "abc STOxxy"


def test_no_stops_passes_through() -> None:
    matcher = StopMatcher(["", ""])
    assert matcher.push("anything") == ("anything", None)
    assert matcher.flush() == ""


def test_random_chunking_matches_reference() -> None:
    rng = random.Random(1234)
    alphabet = "ab é🤖\n"
    for _ in range(2000):
        stops = ["".join(rng.choices(alphabet, k=rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 30)))
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(0, 6))))
        chunks = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        emitted, matched = _stream(StopMatcher(stops), chunks)
        assert ("".join(emitted), matched) == _reference(text, stops), (text, stops, chunks)
