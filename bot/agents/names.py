"""Agent ids: what one may be, and the problem texts that name agents (shared by the
agents file's sections: agents, workflows, schedules)."""

from __future__ import annotations

import re

AGENT_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")
BAD_AGENT_ID = "agent ids are lowercase letters, digits, '_' and '-', starting with a letter or digit; got {got}"
UNKNOWN_AGENT = "unknown agent {name!r}; agents are {known}"
