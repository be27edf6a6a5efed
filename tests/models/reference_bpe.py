"""Test-only reference for llama.cpp's byte-level BPE tokenizer (`llm_tokenizer_bpe_session`, src/llama-vocab.cpp):
split the text with llama.cpp's regex, write each piece's UTF-8 bytes as GPT-2 characters, then merge pairs by
rank (GPT-2's algorithm: the best-ranked pair, every occurrence of it, until no pair has a rank).

The `regex` module (with \\p{..}) is not installed, so llama.cpp's regex strings are translated for Python's `re`:
\\p{L} and \\p{N} become explicit classes built from `unicodedata` categories, \\s and \\S the Unicode White_Space
set (llama.cpp's is_whitespace flag; Python's own \\s also matches U+001C..U+001F).
"""

from __future__ import annotations

import functools
import itertools
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

# llm_tokenizer_bpe in llama.cpp src/llama-vocab.cpp (commit 00ad355e): LLAMA_VOCAB_PRE_TYPE_LLAMA3 ...
LLAMA3_REGEX = (
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
# ... LLAMA_VOCAB_PRE_TYPE_QWEN2 ...
QWEN2_REGEX = (
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
# ... and LLAMA_VOCAB_PRE_TYPE_GPT2 (only to show that the test texts tell the regexes apart)
GPT2_REGEX = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"

_WHITE_SPACE = "\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"  # Unicode White_Space


@functools.cache
def _category_class(major: str) -> str:
    """The body of a `re` character class holding every code point whose general category starts with `major`."""
    ranges: list[tuple[int, int]] = []
    for cp in range(sys.maxunicode + 1):
        if unicodedata.category(chr(cp)).startswith(major):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


@functools.cache
def compile_llama_regex(regex: str) -> re.Pattern[str]:
    """llama.cpp's regex for Python's `re` (\\p{L}, \\p{N}, \\s, \\S spelled out; in or out of [...])."""
    out, inside, i = [], False, 0
    while i < len(regex):
        c = regex[i]
        if c == "\\":
            escape = regex[i : i + 2]
            if escape == "\\p":
                body = _category_class(regex[i + 3])  # \p{L} or \p{N}
                assert regex[i + 4] == "}", regex[i:]
                out.append(body if inside else f"[{body}]")
                i += 5
                continue
            if escape == "\\s":
                out.append(_WHITE_SPACE if inside else f"[{_WHITE_SPACE}]")
            elif escape == "\\S":
                assert not inside, "\\S inside [...] is not used by these regexes"
                out.append(f"[^{_WHITE_SPACE}]")
            else:
                out.append(escape)  # \r, \n
            i += 2
            continue
        if c == "[":
            inside = True
        elif c == "]":
            inside = False
        out.append(c)
        i += 1
    return re.compile("".join(out))


def regex_split(regex: str, text: str) -> list[str]:
    """The pieces llama.cpp's unicode_regex_split makes: every match, and any text between matches."""
    pieces, end = [], 0
    for m in compile_llama_regex(regex).finditer(text):
        if m.start() > end:
            pieces.append(text[end : m.start()])
        pieces.append(m.group())
        end = m.end()
    if end < len(text):
        pieces.append(text[end:])
    return pieces


@functools.cache
def byte_chars() -> tuple[str, ...]:
    """GPT-2's byte → character table: printable Latin-1 bytes are themselves, the others U+0100 onwards."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    shifted = itertools.count(256)
    return tuple(chr(b) if b in printable else chr(next(shifted)) for b in range(256))


def to_byte_chars(text: str) -> str:
    table = byte_chars()
    return "".join(table[b] for b in text.encode())


def learn_merges(texts: Sequence[str], n_merges: int) -> list[tuple[str, str]]:
    """Byte-level BPE merges learnt on whole texts (no pre-split, so merges cross every regex boundary and a
    wrong split shows in the ids): most frequent pair first, ties by text."""
    words = Counter(tuple(to_byte_chars(t)) for t in texts)
    merges: list[tuple[str, str]] = []
    for _ in range(n_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        merges.append(best)
        words = Counter({_merge(word, best): count for word, count in words.items()})
    return merges


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(word):
        if word[i : i + 2] == pair:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


@dataclass(slots=True)
class BpeReference:
    """llama.cpp's tokenize(text, add_special=True, parse_special=True) for a byte-level BPE vocabulary."""

    tokens: list[str]
    merges: list[tuple[str, str]]
    regex: str
    specials: list[str]  # control tokens: split off the text before pre-tokenizing
    ignore_merges: bool = False
    bos_id: int | None = None  # prepended when set
    _ids: dict[str, int] = field(init=False)
    _ranks: dict[tuple[str, str], int] = field(init=False)

    def __post_init__(self) -> None:
        self._ids = {t: i for i, t in enumerate(self.tokens)}
        self._ranks = {m: r for r, m in enumerate(self.merges)}

    def encode(self, text: str) -> list[int]:
        ids = [] if self.bos_id is None else [self.bos_id]
        alternatives = "|".join(map(re.escape, sorted(self.specials, key=len, reverse=True)))
        for fragment in re.split(f"({alternatives})", text) if self.specials else [text]:
            if fragment in self.specials:
                ids.append(self._ids[fragment])
                continue
            for piece in regex_split(self.regex, fragment):
                ids.extend(self._ids[s] for s in self.bpe(to_byte_chars(piece)))
        return ids

    def bpe(self, word: str) -> list[str]:
        if self.ignore_merges and word in self._ids:
            return [word]
        symbols = tuple(word)
        while len(symbols) > 1:
            ranked = [p for p in itertools.pairwise(symbols) if p in self._ranks]
            if not ranked:
                break
            symbols = _merge(symbols, min(ranked, key=self._ranks.__getitem__))
        return list(symbols)
