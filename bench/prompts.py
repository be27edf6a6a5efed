"""Benchmark prompts: a unique prefix per request (defeats prefix caching) followed by fixed filler text."""

from __future__ import annotations

from dataclasses import dataclass

# English prose, so both tokenizers see ordinary text; about 1.2 tokens per word with SmolLM2's BPE.
FILLER = (
    "The history of the printing press begins in the fifteenth century, when movable metal type made books cheaper "
    "and faster to produce than hand copying ever could. Within a few decades presses spread across Europe, literacy "
    "rose, and ideas travelled further than before. Scholars argue about how much the press changed religion, science "
    "and politics, but nearly all agree that it altered how knowledge was stored, shared and questioned. Printers "
    "became publishers, editors and booksellers at once, and cities competed to host them. "
)
QUESTION = "Summarise the passage above in detail, then continue writing about the same subject."


@dataclass(slots=True)
class ChatPrompt:
    system: str
    user: str

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]


def filler_words(words: int) -> str:
    """The first `words` words of the filler, repeated as needed."""
    source = FILLER.split()
    return " ".join(source[i % len(source)] for i in range(words))


def make_prompt(run_id: str, index: int, words: int) -> ChatPrompt:
    """The unique tag opens the system message, so the rendered prompts differ from their first few tokens on."""
    return ChatPrompt(
        system=f"Session {run_id}-{index:05d}. You are a helpful assistant.",
        user=f"{filler_words(words)}\n\n{QUESTION}",
    )
