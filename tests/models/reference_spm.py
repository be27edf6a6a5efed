"""Test oracle: llama.cpp's SPM ("llama") tokenizer, re-implemented in plain Python from llama-vocab.cpp.

Follows `llama_vocab::impl::tokenize` (LLAMA_VOCAB_TYPE_SPM), `tokenizer_st_partition` and
`llm_tokenizer_spm_session` step by step, on UTF-8 bytes as the C++ does: special tokens are cut out of the text
longest first; each remaining fragment gets a " " prefix when `add_space_prefix` is set and the previous fragment
was a token (or it is the first), spaces become "▁", the fragment is split into UTF-8 characters, and adjacent
symbols are merged bigram by bigram, best score of the merged piece first (ties: leftmost), while the merged text is a
vocabulary piece; symbols that are no piece come out as `<0xAB>` byte tokens (resegment). Nothing here is shared with
the converter under test.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

# llama_token_type (llama.h)
UNKNOWN = 2
CONTROL = 3
USER_DEFINED = 4

_SPACE_MARK = "\u2581".encode()  # llama_escape_whitespace: " " → "▁"


@dataclass(slots=True)
class _Symbol:
    prev: int
    next: int
    start: int  # byte offset in the fragment
    n: int  # byte length; 0 once merged into its left neighbour


def _utf8_len(lead: int) -> int:
    # unicode_len_utf8: by the high nibble of the lead byte
    return (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4)[lead >> 4]


class SpmReference:
    def __init__(
        self,
        tokens: Sequence[str],
        scores: Sequence[float],
        types: Sequence[int],
        add_space_prefix: bool,
        bos_id: int | None = None,
        add_bos: bool = False,
    ) -> None:
        self.texts = [t.encode("utf-8") for t in tokens]
        self.ids = {t: i for i, t in enumerate(self.texts)}
        self.scores = [float(s) for s in scores]
        self.types = list(types)
        self.add_space_prefix = add_space_prefix
        self.bos_id = bos_id
        self.add_bos = add_bos
        # cache_special_tokens: control, user-defined and unknown tokens, longest text first
        special = [i for i, ty in enumerate(self.types) if ty in (CONTROL, USER_DEFINED, UNKNOWN)]
        self.specials = sorted(special, key=lambda i: -len(self.texts[i]))

    def tokenize(self, text: str, add_special: bool = False, parse_special: bool = True) -> list[int]:
        output: list[int] = []
        if add_special and self.add_bos:
            assert self.bos_id is not None
            output.append(self.bos_id)
        is_prev_special = True  # prefix with space if first token
        for fragment in self._partition(text.encode("utf-8"), parse_special):
            if isinstance(fragment, int):
                output.append(fragment)
                is_prev_special = True
                continue
            raw = (b" " if self.add_space_prefix and is_prev_special else b"") + fragment
            self._spm(raw.replace(b" ", _SPACE_MARK), output)
            is_prev_special = False
        return output

    def _partition(self, raw: bytes, parse_special: bool) -> list[bytes | int]:
        buffer: list[bytes | int] = [raw] if raw else []
        for token in self.specials:
            if not parse_special and self.types[token] in (CONTROL, UNKNOWN):
                continue
            needle = self.texts[token]
            if needle not in raw:
                continue  # shortcut only: cannot occur in any fragment
            split: list[bytes | int] = []
            for fragment in buffer:
                if isinstance(fragment, int):
                    split.append(fragment)
                    continue
                start = 0
                while (match := fragment.find(needle, start)) != -1:
                    if match > start:
                        split.append(fragment[start:match])
                    split.append(token)
                    start = match + len(needle)
                if start < len(fragment):
                    split.append(fragment[start:])
            buffer = split
        return buffer

    def _byte_to_token(self, byte: int) -> int:
        token = self.ids.get(f"<0x{byte:02X}>".encode())
        return token if token is not None else self.ids[bytes([byte])]

    def _spm(self, text: bytes, output: list[int]) -> None:
        symbols: list[_Symbol] = []
        offs = 0
        while offs < len(text):
            n = min(_utf8_len(text[offs]), len(text) - offs)
            index = len(symbols)
            symbols.append(_Symbol(prev=index - 1, next=-1 if offs + n == len(text) else index + 1, start=offs, n=n))
            offs += n

        # priority_queue top = highest score, then lowest left index: a min-heap on (-score, left)
        work_queue: list[tuple[float, int, int, int]] = []
        rev_merge: dict[bytes, tuple[int, int]] = {}

        def try_add_bigram(left: int, right: int) -> None:
            if left == -1 or right == -1:
                return
            start = symbols[left].start
            piece = text[start : start + symbols[left].n + symbols[right].n]
            token = self.ids.get(piece)
            if token is None:
                return
            heapq.heappush(work_queue, (-self.scores[token], left, right, len(piece)))
            rev_merge[piece] = (left, right)

        for i in range(1, len(symbols)):
            try_add_bigram(i - 1, i)

        while work_queue:
            _, left, right, size = heapq.heappop(work_queue)
            left_sym, right_sym = symbols[left], symbols[right]
            if left_sym.n == 0 or right_sym.n == 0 or left_sym.n + right_sym.n != size:
                continue  # one of them was merged since
            left_sym.n += right_sym.n
            right_sym.n = 0
            left_sym.next = right_sym.next
            if right_sym.next >= 0:
                symbols[right_sym.next].prev = left
            try_add_bigram(left_sym.prev, left)
            try_add_bigram(left, left_sym.next)

        def resegment(symbol: _Symbol) -> None:
            piece = text[symbol.start : symbol.start + symbol.n]
            token = self.ids.get(piece)
            if token is not None:
                output.append(token)
                return
            pair = rev_merge.get(piece)
            if pair is None:
                output.extend(self._byte_to_token(b) for b in piece)
                return
            resegment(symbols[pair[0]])
            resegment(symbols[pair[1]])

        i = 0 if symbols else -1
        while i != -1:
            resegment(symbols[i])
            i = symbols[i].next
