"""A fourth kind of fix, as a third party would ship it: few-shot example selection for the prompt.

For each prompt-routed cluster it picks up to ``SHOTS`` of the users' own corrections (consented
events only, never a golden item's text) and appends them to the champion prompt as examples of
good answers; the result is a new version in the prompt registry. Its champion slot is the prompt,
so approval, canary, serving, the watch and rollback are the prompt's. Registered by the entry point
``flywheel.improvers: fewshot`` in ``fewshot_improver-0.1.0.dist-info`` beside this package.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar, Literal

from pydantic import BaseModel

from flywheel.candidates import BasePayload, Candidate, ChampionKind
from flywheel.improvers.base import BaseImprover, Proposal
from flywheel.improvers.context import CycleContext, earliest_seen, short_hash
from flywheel.registry import register_prompt
from flywheel.schemas import FailureCluster

SHOTS = 3
HEADER = "Examples of good answers, corrected by our users (answer in the same way):"


class Shot(BaseModel):
    query: str
    answer: str
    event_id: str


class FewShotPayload(BasePayload):
    kind: Literal["fewshot"] = "fewshot"
    template: str
    shots: list[Shot]


class FewShotImprover(BaseImprover):
    name: ClassVar[str] = "fewshot"
    slot: ClassVar[ChampionKind] = ChampionKind.prompt
    payload_model: ClassVar[type[BasePayload]] = FewShotPayload
    title: ClassVar[str] = "few-shot examples"
    built_on: ClassVar[str] = "made from"

    def select(self, ctx: CycleContext, clusters: Sequence[FailureCluster]) -> list[FailureCluster]:
        return [c for c in clusters if c.route == "prompt" and c.category != "other" and c.consented > 0]

    def propose(self, ctx: CycleContext, clusters: Sequence[FailureCluster], protected: Sequence[str]) -> Proposal:
        with ctx.feedback() as store:
            events = store.get([i for c in clusters for i in c.event_ids])
        banned = set(protected)
        shots: list[Shot] = []
        for e in sorted(events, key=lambda e: e.event_id):
            if e.consent and e.correction and e.query not in banned and e.correction not in banned:
                shots.append(Shot(query=e.query, answer=e.correction, event_id=e.event_id))
            if len(shots) == SHOTS:
                break
        if not shots:
            return Proposal(notes=[f"no consented correction to show in {', '.join(c.cluster_id for c in clusters)}"])
        block = "\n".join(f"User: {s.query}\nAnswer: {s.answer}" for s in shots)
        template = f"{ctx.champion_template.rstrip()}\n\n{HEADER}\n{block}\n"
        ref = register_prompt(
            ctx.settings,
            template,
            f"few-shot examples, cycle {ctx.cycle_id}",
            {"flywheel.kind": self.name, "flywheel.cycle_id": ctx.cycle_id},
        )
        first_seen, by_cluster = earliest_seen(clusters)
        cand = Candidate(
            candidate_id=f"fewshot-{short_hash(ctx.cycle_id, template)}",
            cycle_id=ctx.cycle_id,
            kind=self.name,
            cluster_ids=[c.cluster_id for c in clusters],
            parent=ctx.champion_version,
            version=ref.version,
            first_seen=first_seen,
            created_at=datetime.now(UTC),
            payload=FewShotPayload(template=template, shots=shots, cluster_first_seen=by_cluster),
        )
        return Proposal(candidates=[cand])


IMPROVER = FewShotImprover()
