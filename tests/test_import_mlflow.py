"""``flywheel import mlflow`` (issue 30 part 1) against a real MLflow on a temporary SQLite store:
traces made by MLflow Tracing (a traced function with a retriever and an LLM span), feedback and
expectations logged with ``mlflow.log_feedback``/``log_expectation``, imported through the one ingest
path, then re-imported, limited by time, without consent, malformed, and on to triage's clusters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flywheel.config import load_settings
from flywheel.feedback.store import open_store

PROMPT = "assistant-system"


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One tracking store for the module (creating MLflow's tables costs seconds); each test has its
    own experiment. Traces are exported synchronously, so feedback can be logged right after."""
    import mlflow

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        mlflow.genai.register_prompt(PROMPT, "You answer questions about {{product}}.")
        yield uri


@pytest.fixture
def experiment(tracking: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
    mlflow.set_tracking_uri(tracking)
    name = f"product-{request.node.name}"[:200]
    mlflow.set_experiment(name)
    return name


def _answer(
    question: str,
    answer: str,
    docs: list[str],
    *,
    tags: dict[str, str] | None = None,
    user: str | None = "u-1",
    model: str = "gpt-4o-mini",
    prompt: bool = True,
) -> str:
    """One product call traced by MLflow: a retriever span, an LLM span naming its model; returns the trace id."""
    import mlflow
    from mlflow.entities import Document, SpanType

    @mlflow.trace(span_type=SpanType.RETRIEVER)
    def retrieve(query: str) -> list[Document]:
        return [
            Document(page_content=f"text of {d}", metadata={"doc_uri": d}, id=d if i == 0 else None)
            for i, d in enumerate(docs)
        ]

    @mlflow.trace(span_type=SpanType.CHAT_MODEL)
    def chat(messages: list[dict[str, str]]) -> dict[str, Any]:
        mlflow.get_current_active_span().set_attribute("mlflow.llm.model", model)
        return {"choices": [{"message": {"role": "assistant", "content": answer}}]}

    @mlflow.trace
    def assistant(question: str) -> str:
        if prompt:
            mlflow.genai.load_prompt(f"prompts:/{PROMPT}/1")
        retrieve(question)
        metadata = {"mlflow.trace.user": user, "mlflow.trace.session": "s-1"} if user else {}
        mlflow.update_current_trace(tags=tags if tags is not None else {"consent": "true"}, metadata=metadata)
        return chat([{"role": "system", "content": "..."}, {"role": "user", "content": question}])["choices"][0][
            "message"
        ]["content"]

    assistant(question)
    mlflow.flush_trace_async_logging()
    trace_id = mlflow.get_last_active_trace_id()
    assert trace_id is not None
    return trace_id


def _valid_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The world's feedback without its deliberately malformed lines."""
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("query"), str) and isinstance(value.get("user_id"), str):
            yield value


def _human(who: str = "u-1") -> Any:
    from mlflow.entities import AssessmentSource

    return AssessmentSource(source_type="HUMAN", source_id=who)


def _stored() -> dict[str, dict[str, Any]]:
    with open_store(load_settings().resolved_store_url) as store:
        return {e.event_id: asdict(e) for e in store.events()}


def _by_assessment(stored: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["metadata"]["mlflow_assessment"]: e for e in stored.values()}


def test_assessments_become_events_field_by_field_and_a_reimport_stores_nothing(
    cli, experiment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow.entities import AssessmentSource

    monkeypatch.setenv("FLYWHEEL_IMPORTS__MLFLOW__NUMERIC_SIGNALS", '{"resolved": "outcome"}')
    tid = _answer(
        "How much does the Pro plan cost?", "The Pro plan costs $10 per month.", ["pricing.md", "plans/pro.md"]
    )
    mlflow.log_feedback(
        trace_id=tid,
        name="thumbs",
        value=False,
        rationale="the price went up",
        source=_human(),
        metadata={"reason": "outdated"},
    )
    mlflow.log_feedback(trace_id=tid, name="stars", value=2, source=_human())
    mlflow.log_feedback(
        trace_id=tid, name="expert", value=0.2, source=_human("reviewer-3"), metadata={"reason": "stale pricing"}
    )
    mlflow.log_feedback(trace_id=tid, name="resolved", value=0, source=_human())
    mlflow.log_expectation(
        trace_id=tid, name="expected_response", value="The Pro plan costs $12 per month.", source=_human("agent-7")
    )
    mlflow.log_feedback(
        trace_id=tid, name="relevance", value=0.9, source=AssessmentSource(source_type="LLM_JUDGE", source_id="gpt-4o")
    )
    mlflow.log_feedback(
        trace_id=tid, name="length", value=True, source=AssessmentSource(source_type="CODE", source_id="len_check")
    )

    report = cli("import", "mlflow", "--experiment", experiment, "--json")
    assert {
        k: report[k]
        for k in (
            "source",
            "experiment",
            "traces",
            "read",
            "accepted",
            "duplicates",
            "rejected",
            "skipped_no_consent",
            "errors",
        )
    } == {
        "source": "mlflow",
        "experiment": experiment,
        "traces": 1,
        "read": 7,
        "accepted": 5,
        "duplicates": 0,
        "rejected": 0,
        "skipped_no_consent": 0,
        "errors": [],
    }
    assert report["skipped"] == {"llm_judge feedback, not a person's": 1, "code feedback, not a person's": 1}
    stored = _stored()
    assert all(key.startswith(f"mlflow:{tid}/a-") for key in stored)
    events = _by_assessment(stored)
    assert set(events) == {"thumbs", "stars", "expert", "resolved", "expected_response"}
    shared = {
        "query": "How much does the Pro plan cost?",
        "output": "The Pro plan costs $10 per month.",
        "user_id": "u-1",
        "session_id": "s-1",
        "consent": True,
        "prompt_version": "1",
        "model": "gpt-4o-mini",
        "context_ids": ["pricing.md", "plans/pro.md"],
        "pii_scrubbed": [],
    }
    for e in events.values():
        assert {k: e[k] for k in shared} == shared
    thumbs = events["thumbs"]
    assert (thumbs["signal"], thumbs["polarity"], thumbs["reason"], thumbs["comment"], thumbs["value"]) == (
        "thumbs_down",
        -1,
        "outdated",
        "the price went up",
        None,
    )
    assert thumbs["metadata"] == {"mlflow_assessment": "thumbs", "mlflow_source_type": "HUMAN"}
    assert (events["stars"]["signal"], events["stars"]["value"], events["stars"]["polarity"]) == ("rating", 2, -1)
    expert = events["expert"]
    assert (expert["signal"], expert["value"], expert["reason"]) == ("expert_review", 0.2, None)
    assert expert["metadata"]["mlflow_reason"] == "stale pricing"  # not one of SPEC's reasons: kept aside
    assert (events["resolved"]["signal"], events["resolved"]["value"]) == ("outcome", 0)
    correction = events["expected_response"]
    assert (correction["signal"], correction["correction"], correction["polarity"]) == (
        "correction",
        "The Pro plan costs $12 per month.",
        -1,
    )
    # The feedback's own time, not the import's.
    (thumbs_assessment,) = [a for a in mlflow.get_trace(tid).info.assessments if a.name == "thumbs"]
    assert thumbs["ts"] == datetime.fromtimestamp(thumbs_assessment.create_time_ms / 1000, UTC)

    again = cli("import", "mlflow", "--experiment", experiment, "--json")
    assert (again["read"], again["accepted"], again["duplicates"], again["rejected"]) == (7, 0, 5, 0)
    assert _stored() == stored


def test_since_skips_older_traces_and_the_next_import_starts_where_the_last_stopped(
    cli, experiment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    old = _answer("Is there a free plan?", "No.", ["pricing.md"])
    mlflow.log_feedback(trace_id=old, name="thumbs", value=False, source=_human())
    between = datetime.now(UTC)
    new = _answer("Can I pay yearly?", "Yes, with a discount.", ["billing.md"])
    mlflow.log_feedback(trace_id=new, name="thumbs", value=True, source=_human())

    report = cli("import", "mlflow", "--experiment", experiment, "--since", between.isoformat(), "--json")
    assert (report["traces"], report["accepted"]) == (1, 1)
    assert [e["query"] for e in _stored().values()] == ["Can I pay yearly?"]
    assert report["since"] == datetime.fromtimestamp(int(between.timestamp() * 1000) / 1000, UTC).isoformat()

    # Without --since: from the newest trace read (no lookback here), so the old trace is not read again.
    monkeypatch.setenv("FLYWHEEL_IMPORTS__MLFLOW__LOOKBACK_HOURS", "0")
    later = _answer("Do you have a student discount?", "No.", ["pricing.md"])
    mlflow.log_feedback(trace_id=later, name="stars", value=1, source=_human())
    report = cli("import", "mlflow", "--experiment", experiment, "--json")
    assert (report["traces"], report["accepted"], report["duplicates"]) == (2, 1, 1)  # `new` again, and `later`
    assert sorted(e["query"] for e in _stored().values()) == ["Can I pay yearly?", "Do you have a student discount?"]
    # An explicit --since reaches back; what was imported before is a duplicate, the old trace is new.
    report = cli("import", "mlflow", "--experiment", experiment, "--since", "2000-01-01", "--json")
    assert (report["traces"], report["accepted"], report["duplicates"]) == (3, 1, 2)


def test_a_trace_without_consent_is_stored_for_statistics_only_and_counted(
    cli, experiment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.setenv("FLYWHEEL_IMPORTS__MLFLOW__CONSENT_KEY", "user.consent")
    yes = _answer("How do I reset my password?", "Use the link.", ["account.md"], tags={"user.consent": "yes"})
    absent = _answer("How do I delete my account?", "You cannot.", ["account.md"], tags={})
    refused = _answer("Where is my invoice?", "Nowhere.", ["billing.md"], tags={"user.consent": "no"})
    for tid in (yes, absent, refused):
        mlflow.log_feedback(trace_id=tid, name="thumbs", value=False, source=_human())

    report = cli("import", "mlflow", "--experiment", experiment, "--json")
    assert (report["accepted"], report["skipped_no_consent"]) == (3, 2)
    consent = {e["query"]: e["consent"] for e in _stored().values()}
    assert consent == {
        "How do I reset my password?": True,
        "How do I delete my account?": False,
        "Where is my invoice?": False,
    }
    # That its text never leaves the store is triage's rule: see the end-to-end test below.


def test_a_malformed_assessment_is_quarantined_with_its_reason(cli, experiment: str, flywheel_home: Path) -> None:
    import mlflow

    tid = _answer("What does error E42 mean?", "A network problem.", ["errors.md"])
    mlflow.log_feedback(trace_id=tid, name="verdict", value="meh", source=_human())
    mlflow.log_feedback(trace_id=tid, name="stars", value=7, source=_human())
    mlflow.log_feedback(trace_id=tid, name="thumbs", value=False, source=_human())

    report = cli("import", "mlflow", "--experiment", experiment, "--json")
    assert (report["read"], report["accepted"], report["rejected"]) == (3, 1, 2)
    errors = {e["item"]: e for e in report["errors"]}
    by_name = {a.name: a.assessment_id for a in mlflow.get_trace(tid).info.assessments}
    assert set(errors) == {by_name["verdict"], by_name["stars"]}
    assert errors[by_name["verdict"]]["error"].startswith("signal: Input should be 'thumbs_up'")
    assert "meh" not in errors[by_name["verdict"]]["error"]  # the rule, never the value
    assert errors[by_name["stars"]]["error"] == "signal 'rating' needs 'value' between 1 and 5"
    assert {e["trace_id"] for e in report["errors"]} == {tid}
    (kept,) = report["quarantine"]
    assert Path(kept).parent == flywheel_home / "quarantine"
    records = [json.loads(line) for line in Path(kept).read_text().splitlines()]
    assert sorted(r["error"] for r in records) == sorted(e["error"] for e in report["errors"])
    assert {(r["file"], r["index"]) for r in records} == {
        (f"mlflow-{experiment}", e["index"]) for e in report["errors"]
    }
    # The same bad assessments read again: counted again, kept once.
    again = cli("import", "mlflow", "--experiment", experiment, "--since", "2000-01-01", "--json")
    assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 1, 2)


def test_flywheels_own_golden_traces_carry_its_verdicts_and_are_not_imported(
    cli, experiment: str, tmp_path: Path
) -> None:
    """The eval writes the judge's grade on each golden answer back as an assessment (source LLM_JUDGE,
    or CODE for code scorers); importing that experiment must not turn them into user feedback."""
    import mlflow

    from flywheel.evals.golden import GoldenItem, GoldenSet, canonical_version
    from flywheel.evals.pipeline import Variant
    from flywheel.evals.runner import EvalResult, EvalRow
    from flywheel.evals.tracking import cycle_run, experiment_id, log_variant

    rows = [
        EvalRow(
            id="tone",
            category="tone",
            input="Say hi politely",
            expected="a polite greeting",
            scorer="judge",
            output="Hello there!",
            score=0.5,
            rationale="polite but curt",
        )
    ]
    items = (
        GoldenItem(id="tone", input="Say hi politely", expected="a polite greeting", category="tone", scorer="judge"),
    )
    golden = GoldenSet(path=tmp_path / "golden.jsonl", items=items, version=canonical_version(list(items)))
    client = mlflow.MlflowClient()
    exp = experiment_id(client, experiment)
    result = EvalResult(
        variant=Variant(label="champion", prompt_template="t", model="m"), golden_version=golden.version, rows=rows
    )
    log_variant(
        client,
        exp,
        cycle_run(client, exp, "c-1"),
        cycle_id="c-1",
        kind="champion",
        candidate_id="champ",
        result=result,
        golden=golden,
        decision="evaluated",
        metrics={},
        params={},
        tags={},
        artifacts={},
        judge_model="judge-4",
    )
    (trace,) = mlflow.search_traces(locations=[exp], return_type="list")
    grade = next(a for a in trace.info.assessments if a.name == "golden_score")
    assert (grade.value, grade.source.source_type, grade.source.source_id) == (0.5, "LLM_JUDGE", "judge-4")

    report = cli("import", "mlflow", "--experiment", experiment, "--json")
    assert (report["traces"], report["read"], report["accepted"]) == (1, 2, 0)
    assert report["skipped"] == {"flywheel's own evaluation trace": 2}


def test_an_unknown_experiment_is_a_usage_error(cli, tracking: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    out = cli("import", "mlflow", "--experiment", "no-such-experiment", "--json", expect=2)
    assert "no-such-experiment" in out["error"]
    out = cli("import", "mlflow", "--experiment", "x", "--since", "yesterday", "--json", expect=2)
    assert "--since" in out["error"]


def test_end_to_end_traces_with_feedback_become_clusters(cli, experiment: str, world: Path) -> None:
    """The simulator world's questions, answered and traced, with its users' feedback logged on MLflow:
    imported, then triaged into clusters; text without consent never shows."""
    import mlflow

    events = list(_valid_lines(world / "feedback.jsonl"))
    chosen = [e for e in events if e.get("signal") == "thumbs_down" and e.get("reason")][:40]
    chosen += [e for e in events if e.get("signal") == "thumbs_up"][:10]
    for e in chosen:
        tid = _answer(
            e["query"],
            e["output"],
            e.get("context_ids") or ["none"],
            user=e["user_id"],
            tags={"consent": "true" if e["consent"] else "false"},
        )
        mlflow.log_feedback(
            trace_id=tid,
            name="thumbs",
            value=e["signal"] == "thumbs_up",
            source=_human(e["user_id"]),
            rationale=e.get("comment"),
            metadata={"reason": e["reason"]} if e.get("reason") else None,
        )

    report = cli("import", "mlflow", "--experiment", experiment, "--json")
    unconsented = sum(1 for e in chosen if not e["consent"])
    assert (report["traces"], report["read"], report["accepted"], report["rejected"]) == (50, 50, 50, 0)
    assert report["skipped_no_consent"] == unconsented > 0
    assert report["negative"] == 40
    assert cli("import", "mlflow", "--experiment", experiment, "--json")["duplicates"] == 50

    clusters = cli("triage", "--json")["clusters"]
    assert clusters and sum(c["size"] for c in clusters) == 40
    assert all(i.startswith("mlflow:tr-") for c in clusters for i in c["event_ids"])
    shown = json.dumps([c["summary"] for c in clusters])
    # Each unconsented question, whole (the world's questions share their core with other users' ones:
    # "Sync broke AGAIN..." is in a consented "Sorry to bother you, Sync broke AGAIN..."), unless a
    # consenting user asked it in the same words (then it is that user's text).
    said_with_consent = {e["query"] for e in chosen if e["consent"]}
    hidden = [e["query"] for e in chosen if not e["consent"] and e["signal"] == "thumbs_down"]
    hidden = [q for q in hidden if q not in said_with_consent]
    assert hidden and not any(json.dumps(q)[1:-1] in shown for q in hidden)
    print(
        f"end to end: {report['traces']} traces, {report['accepted']} events accepted "
        f"({unconsented} without consent), {len(clusters)} clusters: "
        + ", ".join(f"{c['category']}/{c['route']} x{c['size']}" for c in clusters)
    )


def test_a_database_store_is_read_a_page_a_call_and_the_users_own_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow fetches spans 10 traces a call unless told otherwise; the import tells it a page for one
    search on a database store, then leaves the environment as it found it."""
    import os

    from flywheel.feedback.mlflow_import import BATCH_ENV, _batch_size

    monkeypatch.delenv(BATCH_ENV, raising=False)
    with _batch_size(200):
        assert os.environ[BATCH_ENV] == "200"
    assert BATCH_ENV not in os.environ
    with _batch_size(None):  # a tracking server: its BatchGetTraces takes at most 10
        assert BATCH_ENV not in os.environ
    monkeypatch.setenv(BATCH_ENV, "25")
    with _batch_size(200):
        assert os.environ[BATCH_ENV] == "25"
    assert os.environ[BATCH_ENV] == "25"
