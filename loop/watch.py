"""``flywheel watch``: is what production serves now better or worse than what it replaced, on live
feedback? Plain steps (the Prefect flow ``watch`` only orchestrates and publishes them).

Two kinds of comparison, each a negative-feedback rate against a baseline (:mod:`loop.watch_stats`
for the counts, the interval and the verdict):

- **canary**: the running canary's arm against the production arm, on the events of the same
  period (since the canary started, by the events' ``arm``);
- **promotion**: each production move of the last ``watch.window_days`` (the champions' history says
  when) against the version it replaced: the new version's events since the move against the old
  one's in as long a period before it (by ``prompt_version``, ``index_version`` or ``model``; the
  canary arm's events left out).

Then the actions of SPEC.md (:mod:`loop.watch_actions` performs them, journalled): a canary
significantly worse is rolled back, one not significantly worse is promoted when
``watch.auto_promote``; the latest promotion of a kind significantly worse is rolled back when
``watch.auto_rollback``. Nothing acts before ``watch.min_events`` (capped) events on each side. A
``better`` verdict marks the candidate verified (verified loop velocity).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, SerializerFunctionWrapHandler, model_serializer, model_validator

from flywheel.candidates import ChampionKind
from flywheel.champions import Canary, Move, MoveAction, champion, event_value, running_canary
from flywheel.config import Settings
from flywheel.errors import UsageError
from flywheel.feedback.store import FeedbackStore
from flywheel.loop.cluster_rate import ClusterRate
from flywheel.loop.watch_actions import Intent, WatchAction, journal, pending_intents, perform
from flywheel.loop.watch_clusters import cluster_rates
from flywheel.loop.watch_data import VERSION_COLUMN, RatedEvents
from flywheel.loop.watch_stats import Comparison, Verdict, compare
from flywheel.state import StateStore

DAY = 86400.0


SPEC_FIELDS = (
    "kind",
    "version",
    "against",
    "events",
    "negative_rate",
    "baseline_rate",
    "difference",
    "ci_low",
    "ci_high",
    "verdict",
    "action",
)


class WatchRow(BaseModel):
    """One comparison and what the watch did about it. Its document is flat, SPEC's fields first,
    the comparison's figures among the row's own (as the journal keeps it and reads it back)."""

    kind: str
    version: str
    against: str | None
    action: WatchAction = WatchAction.none
    scope: Literal["canary", "promotion"]
    comparison: Comparison
    since: datetime
    candidate_id: str | None = None
    why: str = Field("", description="One line: why this action (or none).")

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, data: Any) -> Any:
        """A journalled row's flat figures hold its comparison; an intent is journalled only for an
        action, and nothing acts before ``min_events`` on each side: ``enough``."""
        if isinstance(data, dict) and "comparison" not in data:
            data = {**data, "comparison": {"enough": True, **data}}
        return data

    @model_serializer(mode="wrap")
    def _flat(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        flat: dict[str, Any] = {}
        for key, value in handler(self).items():  # the comparison's figures in its place
            flat.update({k: v for k, v in value.items() if k != "enough"} if key == "comparison" else {key: value})
        return {**{k: flat[k] for k in SPEC_FIELDS}, **flat}


class WatchReport(BaseModel):
    watches: list[WatchRow]
    clusters: list[ClusterRate] = Field(default_factory=list)
    at: datetime
    events: int = Field(description="Rated events read.")
    _data: RatedEvents | None = PrivateAttr(None)  # what was read, for the chart

    @property
    def data(self) -> RatedEvents | None:
        return self._data

    def public(self) -> dict[str, Any]:
        """SPEC's document: ``watches``, then what it may grow by (``clusters``)."""
        return {
            "watches": [r.model_dump(mode="json") for r in self.watches],
            "clusters": [c.model_dump(mode="json") for c in self.clusters],
        }


def _row(
    scope: Literal["canary", "promotion"],
    kind: ChampionKind,
    version: str,
    against: str | None,
    comp: Comparison,
    since: float,
    candidate_id: str | None,
) -> WatchRow:
    return WatchRow(
        kind=str(kind),
        version=version,
        against=against,
        scope=scope,
        comparison=comp,
        since=datetime.fromtimestamp(since, tz=UTC),
        candidate_id=candidate_id,
    )


class _Watch:
    """One run's reading of the store and the champions."""

    def __init__(self, settings: Settings, data: RatedEvents) -> None:
        self.settings, self.data = settings, data
        self.cap = settings.triage.per_user_cap
        self.watch = settings.watch

    def compare(self, side: Any, base: Any) -> Comparison:
        w = self.watch
        return compare(
            self.data.side(side, self.cap),
            self.data.side(base, self.cap),
            alpha=w.alpha,
            min_events=w.min_events,
            sequential=w.sequential,
            tau=w.effect_size,
        )

    def canary(self, canary: Canary) -> WatchRow:
        start = canary.started_at.timestamp() if canary.started_at else 0.0
        period = self.data.between(start, None)
        comp = self.compare(period & self.data.equals("arm", "canary"), period & self.data.equals("arm", "production"))
        return _row("canary", canary.kind, canary.version, canary.production, comp, start, canary.candidate_id)

    def label(self, kind: ChampionKind, version: str | None) -> str | None:
        """The value the events carry for a version of ``kind`` (a model's provider name)."""
        return event_value(self.settings, kind, version)

    def promotions(
        self,
        kind: ChampionKind,
        moves: list[Move],
        live: list[Move],
        now: float,
        other_moves: list[float] | None = None,
    ) -> list[tuple[Move, WatchRow]]:
        """Each live production move of ``kind`` in the window against the version it replaced.
        ``other_moves``: when production moves of the other kinds happened; both sides stop at them,
        so the two sides differ in this one change (a later bad prompt does not count against an
        earlier model, nor an earlier index change for a prompt)."""
        prod = [m for m in moves if not m.action.is_canary]
        others = sorted(other_moves or [])
        live_keys = {(m.at, m.to_version) for m in live}
        window = self.settings.watch.window_days * DAY
        column = VERSION_COLUMN[str(kind)]
        out = []
        for i, m in enumerate(prod):
            at = m.at.timestamp() if m.at else 0.0
            if (
                m.action is MoveAction.rollback
                or m.from_version is None
                or at < now - window
                or (m.at, m.to_version) not in live_keys
            ):
                continue
            next_at = prod[i + 1].at if i + 1 < len(prod) else None
            end = next_at.timestamp() if next_at else None
            # The baseline is the replaced version's own events (by their version field) of the window
            # before the move, not only since it moved in: a team's prompt served before `prompt set`.
            start = at - window
            later = [t for t in others if t > at]
            if later and (end is None or later[0] < end):
                end = later[0]
            earlier = [t for t in others if t <= at]
            if earlier and earlier[-1] > start:
                start = earlier[-1]
            production = self.data.not_canary()
            after = self.data.between(at, end) & self.data.equals(column, self.label(kind, m.to_version)) & production
            before = (
                self.data.between(start, at) & self.data.equals(column, self.label(kind, m.from_version)) & production
            )
            row = _row("promotion", kind, m.to_version, m.from_version, self.compare(after, before), at, m.candidate_id)
            out.append((m, row))
        return out


def _decide(settings: Settings, row: WatchRow, *, current: bool) -> WatchAction:
    """SPEC's rules; sets the row's ``why``."""
    w = settings.watch
    comp = row.comparison
    if comp.capped_events < w.min_events or comp.capped_baseline_events < w.min_events:
        row.why = (
            f"waiting: {comp.capped_events:g} and {comp.capped_baseline_events:g} events (capped), "
            f"{w.min_events} needed on each side (watch.min_events)"
        )
        return WatchAction.none
    if row.scope == "canary":
        if comp.verdict is Verdict.worse:
            row.why = "canary significantly worse than production: rolled back"
            return WatchAction.rolled_back
        if not w.auto_promote:
            row.why = (
                f"canary {comp.verdict}, not worse; watch.auto_promote is off: `flywheel promote-canary` promotes it"
            )
            return WatchAction.none
        row.why = f"canary {comp.verdict}, not significantly worse: promoted (watch.auto_promote)"
        return WatchAction.promoted
    if comp.verdict is not Verdict.worse:
        row.why = f"{comp.verdict} than {row.against}"
        return WatchAction.none
    if not current:
        row.why = "worse, but no longer in production (a later move replaced it)"
        return WatchAction.none
    if not w.auto_rollback:
        row.why = f"significantly worse than {row.against}; watch.auto_rollback is off: `flywheel rollback {row.kind}`"
        return WatchAction.none
    row.why = f"significantly worse than {row.against}: rolled back (watch.auto_rollback)"
    return WatchAction.rolled_back


def _promotable(settings: Settings, state: StateStore, row: WatchRow) -> str | None:
    """Why the canary cannot be promoted now (production moved since it was evaluated), or None."""
    from flywheel.loop.promotion import check_fresh

    if row.candidate_id is None:
        return None
    cand = state.candidate(row.candidate_id)
    if cand is None or row.against == row.version:
        return None
    try:
        check_fresh(settings, state, cand)
    except UsageError as exc:
        return str(exc)
    return None


def run_watch(settings: Settings, state: StateStore, store: FeedbackStore, *, dry_run: bool = False) -> WatchReport:
    """Compare, decide, act (unless ``dry_run``), mark verified fixes; returns the watch document."""
    now = time.time()
    finished = [] if dry_run else _finish_interrupted(settings, state)
    canary = running_canary(settings, state)
    histories = {k: (champion(settings, state, k).history(), champion(settings, state, k).live()) for k in ChampionKind}
    since = now - 2 * settings.watch.window_days * DAY
    if canary is not None and canary.started_at is not None:
        since = min(since, canary.started_at.timestamp())
    # Only the version columns a comparison reads (each costs about a second a million rows).
    cutoff = now - settings.watch.window_days * DAY
    watched = {
        VERSION_COLUMN[str(k)]
        for k, (moves, _) in histories.items()
        if any(m.at and m.at.timestamp() >= cutoff and not m.action.is_canary for m in moves)
    }
    data = RatedEvents(store.rated(since=since, versions=sorted(watched)))
    watch = _Watch(settings, data)
    decided: list[tuple[WatchRow, Move | None]] = []
    if canary is not None:
        decided.append((watch.canary(canary), None))
    moved_at = {
        k: [m.at.timestamp() for m in moves if m.at and not m.action.is_canary] for k, (moves, _) in histories.items()
    }
    for kind in ChampionKind:
        moves, live = histories[kind]
        others = [t for k, times in moved_at.items() if k is not kind for t in times]
        for promotion, row in watch.promotions(kind, moves, live, now, others):
            decided.append((row, promotion))
    rows = finished + [row for row, _ in decided]
    for row, move in decided:
        current = move is None or (
            bool(histories[ChampionKind(row.kind)][1]) and histories[ChampionKind(row.kind)][1][-1] == move
        )
        action = _decide(settings, row, current=current)
        if action is WatchAction.promoted and (stale := _promotable(settings, state, row)):
            row.why, action = f"not worse, but cannot be promoted: {stale}", WatchAction.none
        if action is not WatchAction.none and not dry_run:
            intent = Intent(
                scope=row.scope,
                kind=ChampionKind(row.kind),
                version=row.version,
                candidate_id=row.candidate_id,
                action=action,
                figures=row.model_dump(mode="json"),
                decided_at=datetime.now(UTC),
            )
            journal(state, intent)
            perform(settings, state, intent)
            row.action = action
        elif action is not WatchAction.none:
            row.why += " (dry run: nothing done)"
    if not dry_run:
        _mark_verified(state, rows)
    report = WatchReport(
        watches=rows, clusters=cluster_rates(settings, state, store, decided), at=datetime.now(UTC), events=data.size
    )
    report._data = data
    return report


def _finish_interrupted(settings: Settings, state: StateStore) -> list[WatchRow]:
    """Actions an earlier watch decided and did not finish (it died): done now, reported again."""
    rows = []
    for intent in pending_intents(state):
        perform(settings, state, intent)
        row = WatchRow.model_validate(intent.figures)
        row.action = intent.action
        row.why = f"{row.why} (finished after an interrupted watch)"
        rows.append(row)
    return rows


def _mark_verified(state: StateStore, rows: list[WatchRow]) -> None:
    """A ``better`` verdict on a candidate's version is its fix verified on live traffic (first time kept)."""
    for row in rows:
        if (
            row.comparison.verdict is Verdict.better
            and row.candidate_id
            and (cand := state.candidate(row.candidate_id))
            and cand.verified_at is None
        ):
            cand.verified_at = datetime.now(UTC)
            state.save_candidate(cand)


def canary_now(settings: Settings, store: FeedbackStore, canary: Canary) -> WatchRow:
    """The running canary against production as the next watch would see it, deciding and doing
    nothing (``flywheel status`` shows it: reads only the events since the canary started)."""
    since = (
        canary.started_at.timestamp()
        if canary.started_at is not None
        else time.time() - settings.watch.window_days * DAY
    )
    row = _Watch(settings, RatedEvents(store.rated(since=since, versions=[]))).canary(canary)
    row.why = f"{row.why} (as of now; the watch decides)" if row.why else "as of now; the watch decides"
    return row
