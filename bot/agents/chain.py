"""The `chain` engine: a workflow of steps, each run as a delegation to its own agent.

A workflow from threadline.yml (`workflows:`) becomes an agent with this engine, so it is
started like any agent (`/agent <workflow> <task>`, or as the default). Each step is a
child session with its own transcript, linked to the run; a step gets the task and the
previous step's output (and any feedback), nothing else. After a step marked `approval`
the run waits on a gate: `/approve` goes on (and applies a change a step proposed),
`/request-changes` sends the step (or the one it reviews) back with the text. A step
with `reviewOf` is a reviewer: an output that starts with `CHANGES` sends the reviewed
step back with it. Revisions, by reviewers or maintainers, are capped by `maxRevisions`.

The run's position is kept in its conversation (`Tools.remember`), so it picks up where
it stopped when the decision arrives in a later turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.agents.base import (
    DELEGATE,
    REPLY,
    REQUEST_APPROVAL,
    TASK_COMPLETED,
    UPDATE_STATUS,
    AgentSpec,
    EngineError,
    Tools,
    Turn,
)

CHAIN_ENGINE = "chain"
CHAIN_OPTION = "chain"
CHAIN_TOOLS = (UPDATE_STATUS, REPLY, TASK_COMPLETED, DELEGATE, REQUEST_APPROVAL)
CHANGES = "changes"  # a reviewer's output starting with this sends the work back

STEP_PROMPT = "{task}"
PREVIOUS = "\n\nOutput of the previous step ({name}):\n{output}"
FEEDBACK = "\n\nFeedback to address:\n{feedback}"
REVISE_LIMIT = "revision limit reached: {most} revision(s) of this run in all"
STEP_FAILED = "step {name} ({agent}) failed: {error}"
GATE_SUBJECT = "step `{name}` of workflow `{workflow}` is done; continue"
FINISHED = "Workflow `{workflow}` finished: {steps}."


@dataclass(frozen=True)
class Step:
    name: str
    agent: str
    approval: bool = False  # wait for a maintainer after this step
    review_of: str | None = None  # this step reviews that one


@dataclass(frozen=True)
class ChainSpec:
    steps: tuple[Step, ...]
    max_revisions: int = 3


def chain_spec(workflow_id: str, chain: ChainSpec, description: str = "") -> AgentSpec:
    return AgentSpec(
        id=workflow_id,
        engine=CHAIN_ENGINE,
        description=description,
        tools=CHAIN_TOOLS,
        agent_ids=tuple(dict.fromkeys(step.agent for step in chain.steps)),
        max_delegations=1000,
        options={CHAIN_OPTION: chain},
    )


def _fresh() -> dict[str, Any]:
    return {"next": 0, "revisions": 0, "outputs": {}, "feedback": None, "gate": None}


class ChainEngine:
    def __init__(self, spec: AgentSpec) -> None:
        chain = spec.options.get(CHAIN_OPTION)
        if not isinstance(chain, ChainSpec):
            raise TypeError(f"agent {spec.id!r}: options[{CHAIN_OPTION!r}] must hold a ChainSpec")
        self.id = spec.id
        self.chain = chain
        self.index = {step.name: number for number, step in enumerate(chain.steps)}

    @classmethod
    def from_spec(cls, spec: AgentSpec) -> ChainEngine:
        return cls(spec)

    def _state(self, turn: Turn) -> dict[str, Any]:
        for item in reversed(turn.history):
            if isinstance(item.get("chain"), Mapping):
                return {**_fresh(), **dict(item["chain"])}
        return _fresh()

    def _revise(self, state: dict[str, Any], target: str, feedback: str) -> None:
        state["revisions"] += 1
        if state["revisions"] > self.chain.max_revisions:
            raise EngineError(REVISE_LIMIT.format(most=self.chain.max_revisions))
        state["next"] = self.index[target]
        state["feedback"] = feedback

    async def run_turn(self, turn: Turn, tools: Tools) -> None:
        state = self._state(turn)
        for item in turn.inputs:
            gate = state["gate"]
            if gate is None:
                continue
            step = self.chain.steps[gate]
            if item.kind == "approval":
                state["gate"] = None
            elif item.kind == "review":  # changes requested, or a stale gate
                state["gate"] = None
                self._revise(state, step.review_of or step.name, item.body)
        if state["gate"] is not None:  # a comment while waiting: keep waiting
            await tools.remember({"chain": state})
            return
        steps = self.chain.steps
        while state["next"] < len(steps):
            number = state["next"]
            step = steps[number]
            await self._progress(tools, number)
            prompt = STEP_PROMPT.format(task=turn.task)
            if number > 0:
                before = steps[number - 1].name
                output = state["outputs"].get(before, "")
                prompt += PREVIOUS.format(name=before, output=output)
            if state["feedback"]:
                prompt += FEEDBACK.format(feedback=state["feedback"])
            result = await tools.call(DELEGATE, {"agent_id": step.agent, "task": prompt})
            if not result.ok:
                raise EngineError(
                    STEP_FAILED.format(name=step.name, agent=step.agent, error=result.content)
                )
            state["outputs"][step.name] = result.content
            state["feedback"] = None
            if step.review_of and result.content.strip().lower().startswith(CHANGES):
                self._revise(state, step.review_of, result.content)
                await tools.remember({"chain": state})
                continue
            state["next"] = number + 1
            if step.approval:
                state["gate"] = number
                await tools.remember({"chain": state})
                subject = GATE_SUBJECT.format(name=step.name, workflow=self.id)
                await tools.call(REQUEST_APPROVAL, {"subject": subject})
                await self._progress(tools, number + 1, waiting=True)
                return
            await tools.remember({"chain": state})
        await self._progress(tools, len(steps))
        last = steps[-1].name
        await tools.call(
            REPLY,
            {
                "body": FINISHED.format(
                    workflow=self.id, steps=" → ".join(step.name for step in steps)
                )
                + f"\n\n{state['outputs'].get(last, '')}"
            },
        )
        await tools.call(TASK_COMPLETED, {"output": state["outputs"].get(last, "")})

    async def _progress(self, tools: Tools, done: int, *, waiting: bool = False) -> None:
        steps = [
            {"title": f"{step.name} ({step.agent})", "done": number < done}
            for number, step in enumerate(self.chain.steps)
        ]
        summary = (
            "waiting for approval"
            if waiting
            else f"running {self.chain.steps[done].name}"
            if done < len(self.chain.steps)
            else "finished"
        )
        await tools.call(UPDATE_STATUS, {"steps": steps, "summary": summary})
