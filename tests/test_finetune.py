"""Fine-tuning as the last resort: curation rules, the dataset files, the routing threshold, and
jobs on the simulator's /v1/files and /v1/fine_tuning/jobs through the real openai SDK."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import event, write_jsonl
from flywheel.config import FinetuneSettings, IngestSettings, TriageSettings, load_settings
from flywheel.feedback.ingest import to_stored
from flywheel.feedback.scrub import PLACEHOLDERS
from flywheel.improvers.dataset import curate
from flywheel.improvers.surrogates import PLACEHOLDER, SURROGATES
from flywheel.schemas import FailureCluster, FeedbackEvent
from flywheel.sim.finetune import FineTuneOptions
from flywheel.sim.server import SimOptions, Simulator
from nonempty import every

T0 = datetime(2026, 11, 1, tzinfo=UTC)
_WORDS = [
    f"{a}{b}"
    for a in ("sync", "share", "bill", "file", "team", "auth", "disk", "link", "plan", "app")
    for b in ("ora", "ex", "ium", "ant", "ify", "elle", "ock", "ine", "uzz", "amp")
]


def sentence(rng: random.Random, n: int = 9) -> str:
    """Random text: distinct examples that no near-duplicate rule would merge."""
    return " ".join(rng.choice(_WORDS) + str(rng.randint(0, 999)) for _ in range(n))


def corrections(n: int, *, seed: int = 1, users: int = 50, **extra) -> list[dict]:
    rng = random.Random(seed)
    return [
        event(
            f"ev-{seed}-{i}",
            ts=(T0 + timedelta(minutes=i)).isoformat(),
            signal="correction",
            user_id=f"u{i % users}",
            query=sentence(rng) + "?",
            output=sentence(rng),
            correction=sentence(rng),
            reason="wrong",
            **extra,
        )
        for i in range(n)
    ]


def stored(rows: list[dict]):
    return [to_stored(FeedbackEvent.model_validate(r), IngestSettings()) for r in rows]


# -- curation ---------------------------------------------------------------------------------------
def test_near_duplicates_are_removed_and_the_earliest_kept() -> None:
    rows = corrections(20, seed=3)
    base = rows[0]
    # Same text with one character changed, different case and spacing: near-duplicates of the first.
    rows.append(
        {
            **base,
            "event_id": "dup-1",
            "ts": "2026-11-02T00:00:00+00:00",
            "correction": base["correction"].upper() + "  .",
        }
    )
    rows.append({**base, "event_id": "dup-2", "ts": "2026-11-02T00:01:00+00:00", "query": base["query"][:-1] + "!"})
    rows.append({**base, "event_id": "dup-3", "ts": "2026-11-02T00:02:00+00:00"})  # exact copy under a new id
    out = curate(stored(rows), [], FinetuneSettings())
    kept = {e.example_id for e in out.examples}
    assert base["event_id"] in kept and not kept & {"dup-1", "dup-2", "dup-3"}
    assert out.excluded["duplicates"] == 3 and len(kept) == 20


def test_golden_overlap_is_removed() -> None:
    rows = corrections(10, seed=4)
    golden = [rows[2]["query"], rows[5]["query"].lower().replace("?", " ?")]
    out = curate(stored(rows), golden, FinetuneSettings())
    kept = {e.example_id for e in out.examples}
    assert rows[2]["event_id"] not in kept and rows[5]["event_id"] not in kept
    assert out.excluded["golden_overlap"] == 2 and len(kept) == 8


def test_consent_low_quality_and_per_user_cap_each_counted() -> None:
    rows = corrections(40, seed=5, users=1)  # one user: 25 kept, 15 over the cap
    rows += [
        {**r, "event_id": "nc-" + r["event_id"], "user_id": "other", "consent": False} for r in corrections(4, seed=6)
    ]
    rows.append(event("short", signal="correction", correction="ok", user_id="z"))  # too short to teach anything
    rows.append(event("same", signal="correction", correction="The Pro plan costs $10 per month.", user_id="z"))
    out = curate(stored(rows), [], FinetuneSettings(per_user_cap=25))
    assert len(out.examples) == 25
    assert out.excluded["per_user_cap"] == 15 and out.excluded["no_consent"] == 4 and out.excluded["low_quality"] == 2


def test_positive_and_negative_signal_stay_apart() -> None:
    rows = [
        event("acc", signal="accept", query="How do I reset my password?", output="Go to Settings > Security."),
        event(
            "up", signal="thumbs_up", query="How do I share a folder?", output="Open it and click Share.", user_id="u2"
        ),
        event("low", signal="rating", value=2, query="How do I export data?", output="No idea, sorry.", user_id="u3"),
        event(
            "fix",
            signal="correction",
            query="What is the upload limit?",
            output="It is 2 GB per file.",
            correction="The maximum upload size is 50 GB per file.",
            user_id="u4",
        ),
    ]
    out = curate(stored(rows), [], FinetuneSettings())
    by_id = {e.example_id: e for e in out.examples}
    assert set(by_id) == {"acc", "up", "fix"}  # a low rating teaches nothing on its own
    assert by_id["acc"].rejected is None and by_id["up"].rejected is None
    assert (by_id["fix"].answer, by_id["fix"].rejected) == (
        "The maximum upload size is 50 GB per file.",
        "It is 2 GB per file.",
    )


def test_every_exclusion_is_counted_by_rule_and_the_rules_sum_to_the_totals() -> None:
    rows = corrections(6, seed=11)
    rows += [
        event("short", signal="correction", correction="ok", user_id="z1"),
        event("long", signal="correction", correction="x " * 3000, user_id="z2"),
        event("q", signal="correction", query="?", correction="A perfectly good answer.", user_id="z3"),
        event(
            "echo", signal="correction", query="How do I export data?", correction="how do I export data?", user_id="z4"
        ),
        event("same", signal="correction", correction="The Pro plan costs $10 per month.", user_id="z5"),
        {**rows[0], "event_id": "copy", "ts": "2026-11-03T00:00:00+00:00"},
        {**rows[1], "event_id": "nc", "consent": False},
    ]
    out = curate(stored(rows), [rows[2]["query"]], FinetuneSettings())
    assert {k: v for k, v in out.excluded_rules.items() if k.startswith("low_quality.")} == {
        "low_quality.too_short": 1,
        "low_quality.too_long": 1,
        "low_quality.short_query": 1,
        "low_quality.repeats_query": 1,
        "low_quality.correction_equals_output": 1,
    }
    assert out.excluded_rules["golden_overlap.exact"] == 1 and out.excluded_rules["duplicates.exact"] == 1
    for total, n in out.excluded.items():
        assert n == sum(v for k, v in out.excluded_rules.items() if k.split(".")[0] == total), total
    assert out.excluded["low_quality"] == 5 and out.excluded["no_consent"] == 1 and len(out.examples) == 5


def test_every_placeholder_kind_has_a_surrogate() -> None:
    assert set(SURROGATES) == set(PLACEHOLDERS)


def test_surrogates_are_consistent_within_an_example_and_differ_between_examples() -> None:
    rows = [
        event(
            f"s{i}",
            signal="correction",
            user_id=f"u{i}",
            query=f"My email is jane.roe{i}@example.com and my colleague's is bob.roe{i}@example.com, Jane Doe "
            f"here: {sentence(random.Random(i))}?",
            output="I cannot help with that.",
            correction=f"We wrote to jane.roe{i}@example.com, then bob.roe{i}@example.com. Regards, Maria Garcia",
        )
        for i in range(3)
    ]
    out = curate(stored(rows), [], FinetuneSettings())
    emails = re.compile(r"[\w.+-]+@example\.(?:com|org|net)")
    firsts = []
    for ex in out.examples:
        assert not PLACEHOLDER.search(ex.query + ex.answer + (ex.rejected or "")), ex
        in_query, in_answer = emails.findall(ex.query), emails.findall(ex.answer)
        assert in_query == in_answer and len(set(in_query)) == 2  # n-th [EMAIL] -> the same n-th surrogate
        assert not any(f"roe{ex.example_id[1:]}@" in e for e in in_query)  # not the original value
        firsts.append(in_query[0])
    assert len(set(firsts)) == 3  # seeded per example: other examples get other surrogates
    # The first [NAME] of the answer takes the query's first: the rule cannot tell two people apart.
    assert out.surrogates == {"email": 6, "name": 3}


def test_an_answer_that_held_pii_is_kept_with_surrogates(cli, tmp_path: Path, monkeypatch) -> None:
    """1,200 corrections ending "Call +1 415 555 0123 if stuck." gave `built: false, low_quality: 900`."""
    rows = corrections(150, seed=12)
    rows = [{**r, "correction": r["correction"] + " Call +1 415 555 0123 if stuck."} for r in rows]
    src = write_jsonl(tmp_path / "fb.jsonl", rows)
    cli("ingest", str(src), "--json")
    out = _build(cli, "--min-examples", "100")
    assert out["built"] and out["examples"] == 150 and out["excluded"]["low_quality"] == 0
    assert sum(v for k, v in out["excluded_rules"].items() if k.startswith("low_quality.")) == 0
    names = ("train.jsonl", "validation.jsonl", "preference.jsonl", "card.json", "README.md")
    files = [p for p in Path(out["path"]).rglob("*") if p.is_file()]
    for path in files:
        text = path.read_bytes().decode("utf-8", "replace")
        assert "415 555 0123" not in text and not PLACEHOLDER.search(text), path
    with open(out["jsonl"]) as lines:
        answers = [json.loads(line)["messages"][-1]["content"] for line in lines]
    assert every(re.search(r"Call \+1 \d{3} 555 01\d\d if stuck\.$", a) for a in answers)
    card = (Path(out["path"]) / "README.md").read_text()
    assert "## PII" in card and "surrogates from Faker" in card and "phone 150" in card
    first = {n: (Path(out["path"]) / n).read_bytes() for n in names}
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path / "again"))  # a new store from the same feedback
    cli("ingest", str(src), "--json")
    again = _build(cli, "--min-examples", "100")
    assert again["path"] != out["path"]
    assert {n: (Path(again["path"]) / n).read_bytes() for n in names} == first  # byte-identical


# -- the dataset through the CLI -------------------------------------------------------------------
def _build(cli, *extra: str) -> dict:
    return cli("dataset", "build", *extra, "--json")


@pytest.mark.parametrize(("usable", "built"), [(999, False), (1000, True)])
def test_threshold_999_vs_1000_usable_examples(cli, tmp_path: Path, usable: int, built: bool) -> None:
    cli("ingest", str(write_jsonl(tmp_path / "fb.jsonl", corrections(usable))), "--json")
    out = _build(cli)
    assert out["built"] is built and out["examples"] == usable
    if built:
        assert out["train"] + out["validation"] == 1000 and out["validation"] == 100
        with open(out["jsonl"]) as lines:
            assert sum(1 for _ in lines) == out["train"]
    else:
        assert out["version"] is None and out["missing"] == 1


def test_no_unconsented_text_and_no_pii_in_any_dataset_file(cli, tmp_path: Path) -> None:
    rows = corrections(30, seed=8)
    rows += [
        event(
            f"nc{i}",
            signal="correction",
            user_id=f"x{i}",
            consent=False,
            query=f"Where is project Bluebird {i} stored?",
            correction=f"Bluebird answer {i} is secret.",
        )
        for i in range(10)
    ]
    rows += [
        event(
            f"pii{i}",
            signal="correction",
            user_id=f"p{i}",
            query=f"My email is jane.doe{i}@example.com, card 4111 1111 1111 1111, phone +1 415 555 01{i:02d}: "
            f"{sentence(random.Random(50 + i), 12)}?",
            correction=sentence(random.Random(80 + i)),
        )
        for i in range(10)
    ]
    rows.append(
        event(
            "pii-answer",
            signal="correction",
            user_id="q",
            query="Who do I write to about billing?",
            correction="Write to jane.doe@example.com, she handles billing.",
        )
    )
    cli("ingest", str(write_jsonl(tmp_path / "fb.jsonl", rows)), "--json")
    out = _build(cli, "--min-examples", "10")
    assert out["built"] and out["excluded"]["no_consent"] == 10
    files = [p for p in Path(out["path"]).rglob("*") if p.is_file()]
    assert any(p.suffix == ".arrow" for p in files) and any(p.name == "train.jsonl" for p in files)
    planted = [f"jane.doe{i}@example.com" for i in range(10)] + [f"+1 415 555 01{i:02d}" for i in range(10)]
    planted += ["jane.doe@example.com", "4111 1111 1111 1111", "4111111111111111"]
    for path in files:
        data = path.read_bytes()
        assert b"Bluebird" not in data, path
        assert not [v for v in planted if v.encode() in data], path
        assert not PLACEHOLDER.search(data.decode("utf-8", "replace")), path
    text = (Path(out["path"]) / "train.jsonl").read_text() + (Path(out["path"]) / "validation.jsonl").read_text()
    assert text.count("My email is ") == 10  # the questions are there, their PII replaced by surrogates
    assert out["excluded"]["low_quality"] == 0 and out["examples"] == 41  # an answer that held PII is kept
    assert out["surrogates"] == {"card": 10, "email": 11, "phone": 10}


def test_versions_are_deterministic_and_files_well_formed(cli, tmp_path: Path, monkeypatch) -> None:
    rows = corrections(40, seed=9)
    rows += [
        event(
            f"ok{i}",
            signal="accept",
            user_id=f"a{i}",
            query=sentence(random.Random(1000 + i)) + "?",
            output=sentence(random.Random(100 + i)),
        )
        for i in range(12)
    ]
    src = write_jsonl(tmp_path / "fb.jsonl", rows)
    cli("ingest", str(src), "--json")
    first = _build(cli, "--min-examples", "10")
    again = _build(cli, "--min-examples", "10")
    assert again["version"] == first["version"] and again["reused"] is True
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path / "elsewhere"))  # a new store from the same feedback
    cli("ingest", str(src), "--json")
    other = _build(cli, "--min-examples", "10")
    assert other["version"] == first["version"] and other["path"] != first["path"]
    for name in ("train.jsonl", "validation.jsonl", "preference.jsonl", "card.json"):
        assert (Path(other["path"]) / name).read_bytes() == (Path(first["path"]) / name).read_bytes()
    # The stratified split keeps each source on both sides.
    card = json.loads((Path(first["path"]) / "card.json").read_text())
    assert card["sources"] == {"correction": 40, "accepted": 12} and first["validation"] == 5
    # Preference pairs: chosen = the correction, rejected = the model's output, never equal.
    by_query = {r["query"]: r for r in rows}
    with open(first["preference_jsonl"]) as lines:
        pairs = [json.loads(line) for line in lines]
    assert len(pairs) == first["preference_pairs"] == 40
    for p in pairs:
        query = p["input"]["messages"][-1]["content"]
        chosen, rejected = p["preferred_output"][0]["content"], p["non_preferred_output"][0]["content"]
        assert p["input"]["messages"][-1]["role"] == "user"
        assert (chosen, rejected) == (by_query[query]["correction"], by_query[query]["output"]) and chosen != rejected
    with open(first["jsonl"]) as lines:
        for line in lines:
            roles = [m["role"] for m in json.loads(line)["messages"]]
            assert roles[-2:] == ["user", "assistant"]
    import datasets

    sft = datasets.load_from_disk(str(Path(first["path"]) / "sft"))
    assert (len(sft["train"]), len(sft["validation"])) == (first["train"], first["validation"])
    assert set(datasets.load_from_disk(str(Path(first["path"]) / "preference")).column_names) >= {"chosen", "rejected"}


# -- routing -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("usable", "route"), [(999, "prompt"), (1000, "finetune")])
def test_route_to_finetune_needs_a_failed_prompt_and_1000_usable(local_embedder, usable: int, route: str) -> None:
    from flywheel.triage import TriageInputs, triage_events

    rows = [
        event(
            f"e{i:05d}",
            ts=(T0 + timedelta(seconds=i)).isoformat(),
            signal="correction",
            user_id=f"u{i}",
            query="What does error E203 mean?",
            output="A temporary problem.",
            correction=f"Error E203 means the sign-in token expired ({i}).",
            reason="wrong",
        )
        for i in range(usable)
    ]
    rows += [
        event(
            f"n{i}",
            user_id=f"n{i}",
            query="What does error E203 mean?",
            output="A temporary problem.",
            reason="wrong",
            ts=(T0 + timedelta(days=1)).isoformat(),
        )
        for i in range(5)
    ]  # negative, no example
    events = stored(rows)
    settings = TriageSettings()
    (cluster,) = triage_events(events, TriageInputs(settings, local_embedder))
    assert cluster.route == "prompt" and cluster.finetune_gap == max(0, 1000 - usable)  # no failed prompt yet
    (again,) = triage_events(events, TriageInputs(settings, local_embedder, prompt_failed={cluster.cluster_id}))
    assert again.route == route and again.usable_examples == usable and again.prompt_failed


# -- jobs on the simulator -------------------------------------------------------------------------
def _setup_for_jobs(cli, tmp_path: Path, sim: Simulator, monkeypatch) -> tuple:
    from flywheel.loop.context import CycleContext

    monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
    monkeypatch.setenv("FLYWHEEL_TRIAGE__FINETUNE_MIN_EXAMPLES", "20")
    monkeypatch.setenv("FLYWHEEL_FINETUNE__POLL_INITIAL", "0.1")
    monkeypatch.setenv("FLYWHEEL_FINETUNE__POLL_MAX", "0.2")
    rows = [
        event(
            f"e{i}",
            ts=(T0 + timedelta(minutes=i)).isoformat(),
            signal="correction",
            user_id=f"u{i % 9}",
            query=f"What does error E{203 + i % 3} mean? ({sentence(random.Random(i), 5)})",
            output="A temporary server problem.",
            reason="wrong",
            correction=f"Error E{203 + i % 3} means code {i % 3} happened. Retry later.",
        )
        for i in range(30)
    ]
    cli("ingest", str(write_jsonl(tmp_path / "fb.jsonl", rows)), "--json")
    settings = load_settings()
    ctx = CycleContext(
        settings=settings,
        cycle_id="cyc-test",
        resumed=False,
        champion_version="1",
        champion_template="You help.",
        golden_version="g",
        champion_model="gpt-4o-mini",
    )
    cluster = FailureCluster(
        cluster_id="factual-test",
        category="factual",
        route="finetune",
        size=30,
        users=9,
        priority=1.0,
        event_ids=[r["event_id"] for r in rows],
        summary="error codes",
    )
    return settings, ctx, cluster


def test_a_job_that_fails_at_the_provider_leaves_no_candidate_and_says_why(cli, tmp_path: Path, monkeypatch) -> None:
    from flywheel.improvers.finetune_step import improve_finetune_step
    from flywheel.state import open_state

    options = SimOptions(
        finetune=FineTuneOptions(validate_seconds=0.05, train_seconds=0.2, fail_jobs="the training loss diverged")
    )
    with Simulator(options=options) as sim:
        settings, ctx, cluster = _setup_for_jobs(cli, tmp_path, sim, monkeypatch)
        out = improve_finetune_step(ctx, [cluster])
    assert out.candidates == [] and out.dataset["built"]
    (job,) = out.jobs
    assert job["status"] == "failed" and "the training loss diverged" in job["error"]
    assert any("the training loss diverged" in n and "no candidate" in n for n in out.notes)
    with open_state(settings) as state:
        assert state.candidates(kind="finetune") == []
        assert [h["outcome"] for h in state.cluster_history("factual-test")] == ["failed"]


def test_a_malformed_job_status_ends_the_step_with_a_clear_endpoint_error(cli, tmp_path: Path, monkeypatch) -> None:
    """A job status without a usable status or model is an endpoint error (retried like a 500, then
    EndpointFailed, which ends the cycle with one message), never a pydantic ValidationError."""
    from flywheel.improvers.finetune_step import improve_finetune_step
    from flywheel.loop.context import EndpointFailed

    monkeypatch.setenv("FLYWHEEL_LLM_MAX_RETRIES", "1")
    options = SimOptions(finetune=FineTuneOptions(validate_seconds=0.05, train_seconds=0.2, malformed_status=True))
    with Simulator(options=options) as sim:
        _, ctx, cluster = _setup_for_jobs(cli, tmp_path, sim, monkeypatch)
        with pytest.raises(EndpointFailed) as caught:
            improve_finetune_step(ctx, [cluster])
    message = str(caught.value)
    assert "fine-tuning" in message and "without a usable status, model" in message, message
    assert "nothing was promoted" in message


def test_a_resumed_job_is_polled_not_submitted_again(cli, tmp_path: Path, monkeypatch) -> None:
    from flywheel.improvers import finetune as jobs
    from flywheel.improvers import finetuning
    from flywheel.improvers.finetune_step import improve_finetune_step
    from flywheel.llm import make_client

    options = SimOptions(finetune=FineTuneOptions(validate_seconds=0.05, train_seconds=2.0))
    with Simulator(options=options) as sim:
        settings, ctx, cluster = _setup_for_jobs(cli, tmp_path, sim, monkeypatch)
        # The flow stops while the job runs (a cycle that ends before its job).
        first = improve_finetune_step(ctx, [cluster], poll_timeout=0)
        assert first.candidates == [] and first.jobs[0]["status"] in ("validating_files", "running")
        # Restarted, it finds the recorded job and polls it to the end: a model candidate, one job.
        later = ctx.model_copy(update={"cycle_id": "cyc-later"})
        second = improve_finetune_step(later, [cluster], poll_timeout=30)
        assert sim.counts()["fine_tuning.create"] == 1
        (cand,) = second.candidates
        assert cand.kind == "finetune" and cand.payload.job_id == first.jobs[0]["job_id"]
        assert cand.payload.model.startswith("ft:gpt-4o-mini:flywheel-sim:") and cand.version == "1"
        # A submission whose id was never recorded (a crash right after create) is found on the
        # provider by its dataset version and adopted, not submitted again.
        client = make_client(settings)
        dataset = finetuning.build_dataset(settings, min_examples=5)
        lost = jobs.submit(
            client,
            train_jsonl=Path(dataset["jsonl"]),
            validation_jsonl=None,
            base_model="sim-product",
            dataset_version=dataset["version"],
            suffix="lost",
        )
        monkeypatch.setenv("FLYWHEEL_FINETUNE__BASE_MODEL", "sim-product")
        record = finetuning.start_job(load_settings(), client, dataset, cluster_ids=["x"], cycle_id="cyc-3")
        assert record["job_id"] == lost.job_id and sim.counts()["fine_tuning.create"] == 2
        # The model answers what its examples taught; the base model does not.
        answer = (
            client.chat.completions.create(
                model=cand.payload.model, messages=[{"role": "user", "content": "Why do I see error E204?"}]
            )
            .choices[0]
            .message.content
        )
        base = (
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Why do I see error E204?"}]
            )
            .choices[0]
            .message.content
        )
        assert re.search(r"E204 means code 1 happened", answer) and "code 1" not in base


def test_simulator_rejects_a_malformed_training_file_with_its_line(simulator: Simulator) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=simulator.base_url, api_key="x", max_retries=0)
    good = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    bad = client.files.create(file=("t.jsonl", ("\n".join([good] * 11 + ["{not json"])).encode()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=bad.id)
    import time

    for _ in range(50):
        job = client.fine_tuning.jobs.retrieve(job.id)
        if job.status in ("failed", "succeeded"):
            break
        time.sleep(0.05)
    assert job.status == "failed" and job.error.code == "invalid_training_file" and "line 12" in job.error.message
