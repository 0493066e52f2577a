"""Triage for the cycle (which clusters each improver works on is the improver's ``select``).

Incremental: the clusters of the last triage are kept in the state store, and a run reads and embeds
only the negatives stored since (:mod:`flywheel.triage_memory`). A full re-cluster runs the first
time, on request (``flywheel triage --full``), when the embedder or the triage settings changed, or
when the new events would make the kept clusters drift from what a full run would give."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flywheel.llm import make_client
from flywheel.runtime import Runtime
from flywheel.schemas import FailureCluster

if TYPE_CHECKING:
    from flywheel.state.triage import TriageMemory
    from flywheel.triage import TriageInputs

log = logging.getLogger(__name__)


@dataclass
class TriageRun:
    """What a triage did, for the CLI's log and the benchmark."""

    clusters: list[FailureCluster]
    mode: str  # "full" or "incremental"
    why: str  # why a full run, or what an incremental one read
    new_events: int
    embedded: int  # distinct queries embedded (cache hits included)


def triage_step(
    rt: Runtime, progress: Callable[[int], None] | None = None, *, full: bool = False
) -> list[FailureCluster]:
    """Triage everything in the store, as `flywheel triage` and the cycle both do: the configured
    embedder, the LLM classifier when enabled, and the history of failed prompts (fine-tune routing),
    all of the process's Runtime ``rt``. ``full``: re-cluster the whole backlog."""
    return triage_run(rt, progress, full=full).clusters


def triage_run(rt: Runtime, progress: Callable[[int], None] | None = None, *, full: bool = False) -> TriageRun:
    from flywheel.triage import TriageInputs, llm_classifier
    from flywheel.triage_memory import applied, assign, failure_clusters, fingerprint

    settings = rt.settings
    classify = None
    if settings.triage.infer_with_llm:
        classify = llm_classifier(make_client(settings, purpose="triage with infer_with_llm"), settings.judge_model)
    inputs = TriageInputs(
        settings.triage, rt.embedder, prompt_failed=rt.state.prompt_failed_clusters(), classify=classify
    )
    print_ = fingerprint(rt.embedder.name, settings.triage, rt.feedback.where)
    memory = rt.state.triage_memory()
    why = "requested (--full)" if full else None
    if memory is None and why is None:
        why = "no clusters kept yet"
    elif memory is not None and memory.fingerprint != print_ and why is None:
        why = "the embedder or the triage settings changed"
    if memory is not None and why is None:
        new = rt.feedback.ids_after(memory.watermark, -1)
        fresh = new.ids
        if new.mark < memory.watermark:
            why = "the feedback store is not the one the clusters were made from"
        elif not new.exact:  # ids re-read before the mark: leave out the ones kept already
            known = {eid for ids in memory.members.values() for eid in ids}
            fresh = [i for i in fresh if i not in known]
        if why is None and not fresh:
            clusters = failure_clusters(memory, inputs)
            rt.state.keep_triage_memory(memory)  # unchanged: still what the store holds
            return TriageRun(clusters, "incremental", "nothing new", 0, 0)
        if why is None:
            events = sorted(rt.feedback.get(fresh), key=lambda e: (e.ts, e.event_id))
            inc = assign(memory, events, inputs, rt.state.triage_user_counts, new.mark)
            if inc.change is not None:
                generation = memory.generation
                after = applied(memory, inc.change)
                if not rt.state.save_triage_change(inc.change, expected_generation=generation, after=after):
                    log.info("another triage saved first; this one's result is returned, not kept")
                clusters = failure_clusters(after, inputs)
                return TriageRun(clusters, "incremental", f"{len(events)} new events", len(events), inc.embedded)
            why = inc.drift
    return _full(rt, inputs, memory, print_, why or "", progress)


def _full(
    rt: Runtime,
    inputs: TriageInputs,
    memory: TriageMemory | None,
    print_: str,
    why: str,
    progress: Callable[[int], None] | None,
) -> TriageRun:
    """Re-cluster the whole backlog; ids carried over from the kept clusters by membership overlap."""
    from flywheel.triage import group_events
    from flywheel.triage_memory import build_records, failure_clusters, refs_of, stable_ids

    watermark = rt.feedback.stored_mark()  # before reading: what is stored meanwhile is left to the next run
    negatives = list(rt.feedback.events(polarity=-1))
    late = rt.feedback.ids_after(watermark, -1)
    if late.exact and late.ids:
        skip = set(late.ids)
        negatives = [e for e in negatives if e.event_id not in skip]
    grouping = group_events(negatives, inputs, progress)
    old_members = memory.members if memory is not None else {}
    old_category = {cid: r.category for cid, r in memory.clusters.items()} if memory is not None else {}
    ids = stable_ids([(cat, g) for cat, _, g in grouping.groups], old_members, old_category)
    built = build_records(grouping.groups, ids, grouping.vec, inputs.settings)
    labels = refs_of(grouping.votes)
    kept = rt.state.save_triage_full(
        fingerprint=print_,
        watermark=watermark,
        clusters=list(built.records.values()),
        members=built.members,
        users=built.users,
        labels=labels,
    )
    return TriageRun(failure_clusters(kept, inputs), "full", why, len(negatives), len(grouping.vec.index))
