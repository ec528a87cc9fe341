"""The agents file's `workflows:` section: chained agents as steps (bot.agents.chain)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.agents import yamlcheck as y
from bot.agents.base import AgentSpec
from bot.agents.chain import ChainSpec, Step, chain_spec
from bot.agents.names import AGENT_ID, BAD_AGENT_ID, UNKNOWN_AGENT

WORKFLOW_CLASH = "{name!r} is already an agent's id; workflows and agents share one namespace"
EXPECTED_STEP_LIST = (
    "expected a non-empty list of steps (mappings with agent, name, approval, reviewOf), got {got}"
)
BAD_STEP_NAME = "expected a step name not used before in this workflow, got {got}"
BAD_REVIEW_OF = "expected the name of an earlier step, got {got}"

WORKFLOW_KEYS = ("description", "maxRevisions", "steps")
STEP_KEYS = ("name", "agent", "approval", "reviewOf")


def workflows(
    report: y.Report, raw: object, path: y.KeyPath, agents: Sequence[str]
) -> dict[str, AgentSpec]:
    flows: dict[str, AgentSpec] = {}
    expected = y.NOT_A_MAPPING.format(keys="workflow ids", got="{got}")
    entries = y.named(report, raw, path, AGENT_ID, expected=expected, bad_name=BAD_AGENT_ID)
    for flow_id, body, where in entries:
        if flow_id in agents:
            report.add(where, WORKFLOW_CLASH.format(name=flow_id))
            continue
        before = len(report)
        found = y.mapping(report, body, where, WORKFLOW_KEYS)
        description = y.blank_ok(report, found.get("description"), (*where, "description"))
        most = (
            y.count(report, found["maxRevisions"], (*where, "maxRevisions"))
            if "maxRevisions" in found
            else 3
        )
        steps = _steps(report, found.get("steps"), (*where, "steps"), agents)
        if len(report) == before and steps:
            flows[flow_id] = chain_spec(flow_id, ChainSpec(steps, most or 3), description or "")
    return flows


def _steps(
    report: y.Report, raw: object, path: y.KeyPath, agents: Sequence[str]
) -> tuple[Step, ...]:
    if not isinstance(raw, list) or not raw:
        report.add(path, EXPECTED_STEP_LIST.format(got=y.shown(raw)))
        return ()
    steps: list[Step] = []
    for number, item in enumerate(raw):
        where = (*path, number)
        found = y.mapping(report, item, where, STEP_KEYS)
        agent = found.get("agent")
        if not isinstance(agent, str) or agent not in agents:
            report.add((*where, "agent"), UNKNOWN_AGENT.format(name=agent, known=y.choices(agents)))
            continue
        name = found.get("name", agent)
        if not isinstance(name, str) or not name.strip() or any(s.name == name for s in steps):
            report.add((*where, "name"), BAD_STEP_NAME.format(got=y.shown(name)))
            continue
        approval = (
            y.flag(report, found["approval"], (*where, "approval"))
            if "approval" in found
            else False
        )
        review_of = found.get("reviewOf")
        if review_of is not None and review_of not in [s.name for s in steps]:
            report.add((*where, "reviewOf"), BAD_REVIEW_OF.format(got=y.shown(review_of)))
            continue
        steps.append(Step(name, agent, bool(approval), review_of))
    return tuple(steps)
