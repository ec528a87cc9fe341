"""The parts of threadline.yml for model-backed agents: `providers:`, an `llm` agent's own
keys (`provider`, `model`, `runtimeParams`, `tool_choice`, `maxSteps`), and the keys any
agent may have that only matter with a model behind it (`budget`, `sessionAccess`).

A provider names the environment variable holding its API key (`apiKeyEnv`), never the
key itself; the variable must be set when the file is read. An OpenAI-compatible server
on your own machine (Ollama, vLLM, LM Studio) needs no key: give `baseUrl` and leave
`apiKeyEnv` out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from bot.agents import yamlcheck as y
from bot.agents.base import Budget, SessionAccess
from bot.agents.llm import COMPACT_AT, OPTIONS_KEY, TOOL_OUTPUT_LIMIT, LLMOptions
from bot.agents.models import MILLION, Price
from bot.agents.providers.base import (
    ANTHROPIC,
    COMPAT_KINDS,
    OPENAI,
    PROVIDER_KINDS,
    Params,
    ProviderConfig,
    ToolChoice,
)

PROVIDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NO_KEY = "unused"  # what a keyless local server gets; the SDK wants some value
LLM_KEYS = (
    "provider",
    "model",
    "runtimeParams",
    "tool_choice",
    "maxSteps",
    "contextWindow",
    "compactAt",
    "toolOutputLimit",
)
PROVIDER_KEYS = (
    "kind",
    "baseUrl",
    "apiKeyEnv",
    "timeoutSeconds",
    "maxRetries",
    "defaults",
    "compat",
    "contextWindow",
    "promptCaching",
    "prices",
)
PRICE_KEYS = ("input", "output", "cacheRead", "cacheWrite")
# Temperature each API takes (Anthropic: 0-1; OpenAI: 0-2).
TEMPERATURE_RANGE = {ANTHROPIC: (0.0, 1.0), OPENAI: (0.0, 2.0)}
MIN_WINDOW = 1024
PARAM_KEYS = (
    "model",
    "temperature",
    "maxTokens",
    "topP",
    "topK",
    "stopSequences",
    "systemPrompt",
    "providerSpecific",
)
BUDGET_KEYS = ("tokens", "turns", "minutes", "maxCostUsd")
ACCESS_KEYS = ("key_prefix", "allowed_keys", "can_send", "cross_agent")
CHOICE_MODES = ("auto", "any", "none")
MAX_RETRIES = 10

BAD_PROVIDER_ID = "provider ids are letters, digits, '_', '.' and '-'; got {got}"
EXPECTED_PROVIDERS = "expected a mapping of provider ids to providers, got {got}"
UNKNOWN_KIND = "unknown provider kind {name!r}; use {kinds}"
BAD_URL = "expected an http:// or https:// URL, got {got}"
BAD_ENV_NAME = "expected the name of an environment variable (not the key itself), got {got}"
ENV_NOT_SET = "the environment variable {name} is not set (it should hold the API key)"
KEY_REQUIRED = "required for kind {kind}: the environment variable holding the API key"
EXPECTED_SECONDS = "expected a positive number of seconds, got {got}"
BAD_RETRIES = "expected a whole number from 0 to {most}, got {got}"
BAD_RANGE = "expected a number from {low:g} to {high:g}, got {got}"
EXPECTED_OBJECT = "expected a mapping, got {got}"
UNKNOWN_PROVIDER = "unknown provider {name!r}; providers are {known}"
NO_PROVIDERS = "unknown provider {name!r}: the file has no providers section"
BAD_CHOICE = "expected auto, any, none, or a mapping {{type: tool, name: <tool>}}; got {got}"
CHOICE_NOT_ALLOWED = "tool_choice names {name!r}, which is not in this agent's tools"
BAD_COMPAT = "compat is for kind openai only; use {kinds}"
BAD_WINDOW = "expected a whole number of tokens of at least {least}, got {got}"
BAD_TEMPERATURE = "kind {kind} takes a temperature from {low:g} to {high:g}, got {got:g}"
BAD_PRICE = "expected US dollars per million tokens (a number of 0 or more), got {got}"
BAD_COST = "expected a positive number of US dollars, got {got}"
NO_MODEL = "no model: set model (or runtimeParams.model, or the provider's defaults.model)"


def number(report: y.Report, raw: object, path: y.KeyPath, low: float, high: float) -> float | None:
    value = y.number(raw)
    if value is not None and low <= value <= high:
        return value
    report.add(path, BAD_RANGE.format(low=low, high=high, got=y.shown(raw)))
    return None


def _seconds(report: y.Report, raw: object, path: y.KeyPath) -> float | None:
    value = y.number(raw)
    if value is not None and value > 0 and math.isfinite(value):
        return value
    report.add(path, EXPECTED_SECONDS.format(got=y.shown(raw)))
    return None


def _object(report: y.Report, raw: object, path: y.KeyPath) -> dict[str, Any] | None:
    if isinstance(raw, dict):
        return {str(k): v for k, v in raw.items()}
    report.add(path, EXPECTED_OBJECT.format(got=y.shown(raw)))
    return None


def params(report: y.Report, raw: object, path: y.KeyPath) -> Params:
    """`runtimeParams` (or a provider's `defaults`): only what is written is set."""
    found = y.mapping(report, raw, path, PARAM_KEYS)
    values: dict[str, Any] = {}
    checks: dict[str, tuple[str, Any]] = {
        "model": ("model", lambda r, v, p: y.text(r, v, p)),
        "temperature": ("temperature", lambda r, v, p: number(r, v, p, 0.0, 2.0)),
        "maxTokens": ("max_tokens", y.count),
        "topP": ("top_p", lambda r, v, p: number(r, v, p, 0.0, 1.0)),
        "topK": ("top_k", y.count),
        "stopSequences": ("stop_sequences", y.texts),
        "systemPrompt": ("system_prompt", y.any_text),
        "providerSpecific": ("provider_specific", _object),
    }
    for key, value in found.items():
        attr, check = checks[key]
        checked = check(report, value, (*path, key))
        if checked is not None:
            values[attr] = MappingProxyType(checked) if isinstance(checked, dict) else checked
    return Params(**values)


def providers(
    report: y.Report, raw: object, path: y.KeyPath, environ: Mapping[str, str]
) -> dict[str, ProviderConfig | None]:
    """Every provider written, by id; None for one with problems (reported here)."""
    if raw is None:
        return {}
    found: dict[str, ProviderConfig | None] = {}
    entries = y.named(
        report, raw, path, PROVIDER_ID, expected=EXPECTED_PROVIDERS, bad_name=BAD_PROVIDER_ID
    )
    for provider_id, body, where in entries:
        found[provider_id] = _provider(report, provider_id, body, where, environ)
    return found


def _provider(
    report: y.Report,
    provider_id: str,
    raw: object,
    path: y.KeyPath,
    environ: Mapping[str, str],
) -> ProviderConfig | None:
    before = len(report)
    found = y.mapping(report, raw, path, PROVIDER_KEYS)
    kind = found.get("kind")
    if kind is None:
        report.add((*path, "kind"), y.REQUIRED + "; use " + y.choices(PROVIDER_KINDS))
    elif kind not in PROVIDER_KINDS:
        report.add((*path, "kind"), UNKNOWN_KIND.format(name=kind, kinds=y.choices(PROVIDER_KINDS)))
    base_url = None
    if "baseUrl" in found:
        raw_url = found["baseUrl"]
        if isinstance(raw_url, str) and re.match(r"https?://[^\s/]+", raw_url):
            base_url = raw_url.rstrip("/")
        else:
            report.add((*path, "baseUrl"), BAD_URL.format(got=y.shown(raw_url)))
    api_key = _api_key(report, found, path, kind, base_url, environ)
    timeout = (
        _seconds(report, found["timeoutSeconds"], (*path, "timeoutSeconds"))
        if "timeoutSeconds" in found
        else 120.0
    )
    retries = found.get("maxRetries", 3)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        report.add(
            (*path, "maxRetries"), BAD_RETRIES.format(most=MAX_RETRIES, got=y.shown(retries))
        )
        retries = 3
    defaults = params(report, found.get("defaults"), (*path, "defaults"))
    temperature_in_range(report, kind, defaults, (*path, "defaults", "temperature"))
    compat = found.get("compat")
    if compat is not None and (kind != OPENAI or compat not in COMPAT_KINDS):
        report.add((*path, "compat"), BAD_COMPAT.format(kinds=y.choices(COMPAT_KINDS)))
    window = (
        window_tokens(report, found["contextWindow"], (*path, "contextWindow"))
        if "contextWindow" in found
        else None
    )
    caching = (
        y.flag(report, found["promptCaching"], (*path, "promptCaching"))
        if "promptCaching" in found
        else True
    )
    prices = _prices(report, found["prices"], (*path, "prices")) if "prices" in found else {}
    if len(report) > before or not isinstance(kind, str) or api_key is None:
        return None
    return ProviderConfig(
        id=provider_id,
        kind=kind,
        api_key=api_key,
        base_url=base_url,
        timeout_seconds=timeout or 120.0,
        max_retries=retries,
        defaults=defaults,
        compat=compat if isinstance(compat, str) else None,
        context_window=window,
        caching=caching is not False,
        prices=MappingProxyType(prices),
    )


def temperature_in_range(report: y.Report, kind: object, layer: Params, path: y.KeyPath) -> None:
    """Report a temperature the provider's API would refuse (checked at load, not on
    the session's first call)."""
    span = TEMPERATURE_RANGE.get(str(kind))
    value = layer.temperature
    if span is not None and value is not None and not span[0] <= value <= span[1]:
        report.add(path, BAD_TEMPERATURE.format(kind=kind, low=span[0], high=span[1], got=value))


def window_tokens(report: y.Report, raw: object, path: y.KeyPath) -> int | None:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= MIN_WINDOW:
        return raw
    report.add(path, BAD_WINDOW.format(least=MIN_WINDOW, got=y.shown(raw)))
    return None


def _prices(report: y.Report, raw: object, path: y.KeyPath) -> dict[str, Price]:
    """`prices: {<model prefix>: {input, output, cacheRead?, cacheWrite?}}` in US dollars
    per million tokens; cache reads default to the input price, writes too."""
    if not isinstance(raw, dict):
        report.add(path, EXPECTED_OBJECT.format(got=y.shown(raw)))
        return {}
    found: dict[str, Price] = {}
    for model, body in raw.items():
        where = (*path, str(model))
        entry = y.mapping(report, body, where, PRICE_KEYS)
        micros: dict[str, int] = {}
        for key in PRICE_KEYS:
            if key not in entry:
                continue
            value = y.number(entry[key])
            if value is None or value < 0 or not math.isfinite(value):
                report.add((*where, key), BAD_PRICE.format(got=y.shown(entry[key])))
                continue
            micros[key] = round(value * MILLION)
        for key in ("input", "output"):
            if key not in entry:
                report.add((*where, key), y.REQUIRED)
        if "input" in micros and "output" in micros:
            found[str(model)] = Price(
                micros["input"],
                micros["output"],
                micros.get("cacheRead", micros["input"]),
                micros.get("cacheWrite", micros["input"]),
            )
    return found


def _api_key(
    report: y.Report,
    found: Mapping[str, object],
    path: y.KeyPath,
    kind: object,
    base_url: str | None,
    environ: Mapping[str, str],
) -> str | None:
    where = (*path, "apiKeyEnv")
    name = found.get("apiKeyEnv")
    if name is None:
        if kind == OPENAI and base_url is not None:
            return NO_KEY  # a local OpenAI-compatible server
        if kind in (OPENAI, ANTHROPIC):
            report.add(where, KEY_REQUIRED.format(kind=kind))
        return None
    if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
        # Never show what was written: it may be the key itself.
        report.add(where, BAD_ENV_NAME.format(got="a value that is not a variable name"))
        return None
    key = environ.get(name, "")
    if not key:
        report.add(where, ENV_NOT_SET.format(name=name))
        return None
    return key


def tool_choice(report: y.Report, raw: object, path: y.KeyPath) -> ToolChoice | None:
    if isinstance(raw, str) and raw in CHOICE_MODES:
        return ToolChoice(raw)  # type: ignore[arg-type]
    if isinstance(raw, dict):
        kind = raw.get("type")
        if kind in CHOICE_MODES and set(raw) == {"type"}:
            return ToolChoice(kind)
        name = raw.get("name")
        if kind == "tool" and isinstance(name, str) and name and set(raw) == {"type", "name"}:
            return ToolChoice("tool", name)
    report.add(path, BAD_CHOICE.format(got=y.shown(raw)))
    return None


def llm_options(
    report: y.Report,
    found: Mapping[str, object],
    path: y.KeyPath,
    known: Mapping[str, ProviderConfig | None],
) -> dict[str, Any]:
    """An `llm` agent's own keys as AgentSpec.options (`{"llm": LLMOptions}`). A provider
    written with problems of its own (None in `known`) was reported already."""
    before = len(report)
    where = (*path, "provider")
    name = found.get("provider")
    provider = None
    if name is None:
        report.add(where, y.REQUIRED)
    elif not known:
        report.add(where, NO_PROVIDERS.format(name=name))
    elif not isinstance(name, str) or name not in known:
        reason = UNKNOWN_PROVIDER.format(name=name, known=y.choices(known))
        report.add(where, y.unknown(str(name), list(known), reason))
    else:
        provider = known[name]
        if provider is None:
            return {}
    session = params(report, found.get("runtimeParams"), (*path, "runtimeParams"))
    if "model" in found:
        model = y.text(report, found["model"], (*path, "model"))
        session = Params(model=model).over(session) if model else session
    choice = (
        tool_choice(report, found["tool_choice"], (*path, "tool_choice"))
        if "tool_choice" in found
        else ToolChoice()
    )
    steps = y.count(report, found["maxSteps"], (*path, "maxSteps")) if "maxSteps" in found else 20
    if provider is not None and not (session.model or provider.defaults.model):
        report.add((*path, "model"), NO_MODEL)
    if provider is not None:
        temperature_in_range(
            report, provider.kind, session, (*path, "runtimeParams", "temperature")
        )
    window = (
        window_tokens(report, found["contextWindow"], (*path, "contextWindow"))
        if "contextWindow" in found
        else None
    )
    compact_at = (
        number(report, found["compactAt"], (*path, "compactAt"), 0.1, 0.95)
        if "compactAt" in found
        else COMPACT_AT
    )
    output_limit = (
        y.count(report, found["toolOutputLimit"], (*path, "toolOutputLimit"))
        if "toolOutputLimit" in found
        else TOOL_OUTPUT_LIMIT
    )
    if len(report) > before or provider is None or choice is None:
        return {}
    return {
        OPTIONS_KEY: LLMOptions(
            provider=provider,
            params=session,
            tool_choice=choice,
            max_steps=steps or 20,
            context_window=window,
            compact_at=compact_at or COMPACT_AT,
            tool_output_limit=output_limit or TOOL_OUTPUT_LIMIT,
        )
    }


def budget(report: y.Report, raw: object, path: y.KeyPath) -> Budget:
    found = y.mapping(report, raw, path, BUDGET_KEYS)
    tokens = y.count(report, found["tokens"], (*path, "tokens")) if "tokens" in found else None
    turns = y.count(report, found["turns"], (*path, "turns")) if "turns" in found else None
    minutes = (
        y.minutes(report, found["minutes"], (*path, "minutes")) if "minutes" in found else None
    )
    cost = None
    if "maxCostUsd" in found:
        value = y.number(found["maxCostUsd"])
        if value is None or value <= 0 or not math.isfinite(value):
            report.add((*path, "maxCostUsd"), BAD_COST.format(got=y.shown(found["maxCostUsd"])))
        else:
            cost = round(value * MILLION)
    return Budget(tokens=tokens, turns=turns, minutes=minutes, cost_micros=cost)


def access(report: y.Report, raw: object, path: y.KeyPath) -> SessionAccess:
    found = y.mapping(report, raw, path, ACCESS_KEYS)
    prefix = (
        y.text(report, found["key_prefix"], (*path, "key_prefix"))
        if "key_prefix" in found
        else None
    )
    allowed = (
        y.texts(report, found["allowed_keys"], (*path, "allowed_keys"))
        if "allowed_keys" in found
        else ()
    )
    can_send = (
        y.flag(report, found["can_send"], (*path, "can_send")) if "can_send" in found else True
    )
    cross = (
        y.flag(report, found["cross_agent"], (*path, "cross_agent"))
        if "cross_agent" in found
        else False
    )
    return SessionAccess(
        key_prefix=prefix,
        allowed_keys=allowed or (),
        can_send=True if can_send is None else can_send,
        cross_agent=bool(cross),
    )
