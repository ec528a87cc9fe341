"""What Threadline knows of common models: context windows and prices, as data.

Both tables match a model name by its longest listed prefix; a provider or agent
overrides the window with `contextWindow`, and threadline.yml's `prices:` overrides or
adds prices. Prices are integers: micro-dollars per million tokens, so a cost is
`tokens * price // 1_000_000` micro-dollars, with no floating point in a budget.

Sources: https://docs.anthropic.com/en/docs/about-claude/models/overview and
https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching#pricing (cache
writes 1.25x and reads 0.1x the input price), https://platform.openai.com/docs/pricing
(cached input; OpenAI bills no cache writes beyond the input price).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

UNKNOWN_WINDOW = 32_768  # a model we know nothing of: assume a modest window
MILLION = 1_000_000

CONTEXT_WINDOWS: Mapping[str, int] = {
    "claude-": 200_000,
    "gpt-4o": 128_000,
    "gpt-4-turbo": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-5": 400_000,
    "o1": 200_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "gpt-3.5-turbo": 16_385,
    "llama3": 8_192,
    "qwen2.5": 32_768,
}


@dataclass(frozen=True)
class Usage:
    """One call's tokens. `input_tokens` counts every input token of the request, the
    cached ones too; `cache_read` and `cache_write` say how many of them were read from
    the provider's prompt cache or written to it (each priced differently)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read + other.cache_read,
            self.cache_write + other.cache_write,
        )


@dataclass(frozen=True)
class Price:
    """Micro-dollars per million tokens of each kind."""

    input: int
    output: int
    cache_read: int
    cache_write: int

    def cost(self, usage: Usage) -> int:
        """The cost of one call in micro-dollars (rounded down)."""
        fresh = max(0, usage.input_tokens - usage.cache_read - usage.cache_write)
        total = (
            fresh * self.input
            + usage.cache_read * self.cache_read
            + usage.cache_write * self.cache_write
            + usage.output_tokens * self.output
        )
        return total // MILLION


def usd(micros: int) -> str:
    """Micro-dollars as US dollars for people: "0.012345"."""
    return f"{micros / MILLION:.6f}"


def _anthropic(input_usd: float, output_usd: float) -> Price:
    micros = round(input_usd * MILLION)
    return Price(micros, round(output_usd * MILLION), micros // 10, micros * 5 // 4)


def _openai(input_usd: float, output_usd: float, cached_usd: float) -> Price:
    micros = round(input_usd * MILLION)
    return Price(micros, round(output_usd * MILLION), round(cached_usd * MILLION), micros)


PRICES: Mapping[str, Price] = {
    "claude-opus-4": _anthropic(15, 75),
    "claude-sonnet-4": _anthropic(3, 15),
    "claude-3-7-sonnet": _anthropic(3, 15),
    "claude-3-5-sonnet": _anthropic(3, 15),
    "claude-haiku-4": _anthropic(1, 5),
    "claude-3-5-haiku": _anthropic(0.8, 4),
    "gpt-4o": _openai(2.5, 10, 1.25),
    "gpt-4o-mini": _openai(0.15, 0.6, 0.075),
    "gpt-4.1": _openai(2, 8, 0.5),
    "gpt-4.1-mini": _openai(0.4, 1.6, 0.1),
    "gpt-4.1-nano": _openai(0.1, 0.4, 0.025),
}


def _longest_prefix(table: Mapping[str, object], model: str) -> str | None:
    matches = [prefix for prefix in table if model.startswith(prefix)]
    return max(matches, key=len) if matches else None


def context_window(model: str, *overrides: int | None) -> int:
    """The window of `model`: the first override set (agent, then provider), else the
    table's, else UNKNOWN_WINDOW."""
    for value in overrides:
        if value:
            return value
    prefix = _longest_prefix(CONTEXT_WINDOWS, model)
    return CONTEXT_WINDOWS[prefix] if prefix else UNKNOWN_WINDOW


def price_of(model: str, extra: Mapping[str, Price] | None = None) -> Price | None:
    """The price of `model`, `extra` (threadline.yml's `prices:`) before the defaults;
    None when neither lists it (its calls cost nothing we can tell)."""
    table = {**PRICES, **(extra or {})}
    prefix = _longest_prefix(table, model)
    return table[prefix] if prefix else None
