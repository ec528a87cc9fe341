"""LLM providers: one adapter per API family, chosen by `providers.<id>.kind`."""

from __future__ import annotations

from bot.agents.providers.base import ANTHROPIC, OPENAI, PROVIDER_KINDS, Provider, ProviderConfig


def build_provider(config: ProviderConfig) -> Provider:
    """The adapter for `config.kind`, with its own SDK client (close it with `close()`)."""
    # Imported here so that loading the configuration does not import both SDKs.
    if config.kind == OPENAI:
        from bot.agents.providers.openai_chat import OpenAIChatProvider

        return OpenAIChatProvider(config)
    if config.kind == ANTHROPIC:
        from bot.agents.providers.anthropic_messages import AnthropicMessagesProvider

        return AnthropicMessagesProvider(config)
    raise ValueError(
        f"provider {config.id!r}: unknown kind {config.kind!r} (expected one of {', '.join(PROVIDER_KINDS)})"
    )
