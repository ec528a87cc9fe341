"""What `serve` and `worker` check before they touch the database or the network.

One list, used by them and reported by `threadline config check` and `threadline doctor`,
so neither of those can call good a set-up that `serve` then refuses.
"""

from __future__ import annotations

from bot.agents.config import Config, load_config
from bot.config import ConfigError, Settings


def load_agents(settings: Settings) -> Config:
    """The agents file the settings name (or the built-in default); ConfigError with every
    problem and its line when it does not load."""
    return load_config(settings.config)


def startup_problems(settings: Settings) -> list[str]:
    """Every reason `serve` would refuse to start: an insecure set-up, or an agents file
    that does not load (unreadable, not YAML, an unknown engine or key, ...)."""
    problems = settings.serving_problems()
    try:
        load_agents(settings)
    except ConfigError as exc:
        problems += exc.problems
    return problems
