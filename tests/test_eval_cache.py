"""The evaluation cache cannot go stale (issue 25): a score is reused only when everything it
depends on is unchanged. A product pointed at another endpoint is evaluated afresh (it was answered
with the old endpoint's score, and the gate compared candidates with it); the same endpoint twice
is still one evaluation. Two simulators over real HTTP play the two endpoints."""

from __future__ import annotations

from pathlib import Path

from flywheel.config import Settings, load_settings
from flywheel.evals.fingerprint import EvalFingerprint, endpoint_identity
from flywheel.evals.golden import load_golden
from flywheel.evals.pipeline import Variant
from flywheel.improvers.screening import FailingExample
from flywheel.improvers.screening_step import judge_resolutions
from flywheel.loop.evaluate import assemble_evaluation, evaluate_batch_step, evaluate_step, plan_evaluation
from flywheel.runtime import runtime_for
from flywheel.sim.server import Simulator

SECRET = "sk-test-not-to-be-stored-4711"


def _on(sim: Simulator) -> Settings:
    return load_settings(openai_base_url=sim.base_url, openai_api_key=SECRET)


def _champion(world: Path) -> Variant:
    return Variant(
        label="champion", prompt_template=(world / "prompt.txt").read_text(), prompt_version="1", model="gpt-4o-mini"
    )


def _stored_bytes(settings: Settings) -> bytes:
    return b"".join(p.read_bytes() for p in settings.home.glob("state.sqlite*"))


def test_another_endpoint_is_evaluated_afresh_and_the_same_one_is_cached(
    simulator: Simulator, broken_endpoint: Simulator, small_golden: Path, world: Path
) -> None:
    on_a, on_b = _on(simulator), _on(broken_endpoint)
    champion = _champion(world)
    (first,) = evaluate_step(runtime_for(on_a), [champion])
    (again,) = evaluate_step(runtime_for(on_a), [champion])
    assert not first.cached and first.mean is not None and first.mean > 0.2
    assert again.cached and again.scores == first.scores

    (moved,) = evaluate_step(runtime_for(on_b), [champion])  # was: again's score, from the other endpoint
    assert not moved.cached and moved.mean == 0.0
    assert broken_endpoint.counts()["chat.product"] == len(first.rows)
    (back,) = evaluate_step(runtime_for(on_a), [champion])
    assert back.cached and back.scores == first.scores
    (moved_again,) = evaluate_step(runtime_for(on_b), [champion])
    assert moved_again.cached and broken_endpoint.counts()["chat.product"] == len(first.rows)
    assert SECRET.encode() not in _stored_bytes(on_a)


def test_the_batch_path_reads_and_writes_the_cache_by_the_same_fingerprint(
    simulator: Simulator, broken_endpoint: Simulator, small_golden: Path, world: Path
) -> None:
    """What Dask runs (plan, batches, assemble), without Dask: the plan is cached only for the
    endpoint that produced the result."""
    on_a, on_b = _on(simulator), _on(broken_endpoint)
    champion = _champion(world)
    evaluate_step(runtime_for(on_a), [champion])
    assert plan_evaluation(on_a, runtime_for(on_a).state, [champion], slots=2).batches == []
    plan = plan_evaluation(on_b, runtime_for(on_b).state, [champion], slots=2)
    assert plan.cached == [None] and plan.batches
    (result,) = assemble_evaluation(
        on_b, runtime_for(on_b).state, plan, [evaluate_batch_step(on_b, b) for b in plan.batches]
    )
    assert result.mean == 0.0 and not result.cached
    assert plan_evaluation(on_b, runtime_for(on_b).state, [champion], slots=2).batches == []  # remembered under B now
    (still_a,) = evaluate_step(runtime_for(on_a), [champion])
    assert still_a.cached and still_a.mean is not None and still_a.mean > 0.2


def test_screening_verdicts_are_cached_per_judge_endpoint(simulator: Simulator, broken_endpoint: Simulator) -> None:
    example = FailingExample(
        query="How much does the Pro plan cost?",
        output="The Pro plan costs $10 per month.",
        signal="thumbs_down",
        reason="outdated",
    )
    stale = ["The Pro plan costs $10 per month."]
    (honest,) = judge_resolutions(_on(simulator), runtime_for(_on(simulator)).state, [example], stale)
    (lenient,) = judge_resolutions(_on(broken_endpoint), runtime_for(_on(broken_endpoint)).state, [example], stale)
    assert not honest.resolved and lenient.resolved  # was: the first endpoint's cached verdict
    asked = simulator.counts()["chat.resolution"]
    (again,) = judge_resolutions(_on(simulator), runtime_for(_on(simulator)).state, [example], stale)
    assert not again.resolved and simulator.counts()["chat.resolution"] == asked


def test_the_fingerprint_covers_what_a_score_depends_on_and_holds_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    path.write_text('{"id": "a", "input": "q", "expected": "x", "category": "c"}\n')
    golden = load_golden(path)
    base = {"openai_base_url": "http://user:hunter2@Example.com:8000/v1/?key=qsecret", "openai_api_key": SECRET}
    plain = Variant(label="c", prompt_template="t", model="m")
    rag = plain.model_copy(update={"index_version": "3"})

    def key(variant: Variant = plain, **changes: object) -> str:
        return EvalFingerprint.of(load_settings(**{**base, **changes}), golden).key(variant)

    same = key()
    assert key(openai_base_url="http://user:hunter2@example.com:8000/v1?key=qsecret") == same  # one endpoint
    assert key(openai_api_key="sk-another") == same  # a key chooses an account, not an answer
    changed = [
        key(openai_base_url="http://example.com:8001/v1"),
        key(judge_model="another-judge"),
        key(eval={"temperature": 0.7}),
        key(eval={"max_tokens": 50}),
        key(prompt_variables={"product": "X"}),
        key(eval={"pipeline": "pipeline_hooks:shouting"}),
        key(eval={"default_scorer": "exact"}),
        key(plain.model_copy(update={"model": "m2"})),
        key(rag),
    ]
    assert len({same, *changed}) == len(changed) + 1
    # Retrieval settings change the key of a variant that retrieves, not of one that does not.
    for retrieval in (
        {"knowledge": {"retrieval_k": 7}},
        {"embedding": {"model": "other-embedder"}},
        {"knowledge": {"chroma_url": "http://chroma:8000"}},
    ):
        assert key(rag, **retrieval) != key(rag) and key(**retrieval) == same
    doc = EvalFingerprint.of(load_settings(**base), golden).model_dump_json()
    assert SECRET not in doc and "hunter2" not in doc and "qsecret" not in doc and "example.com:8000/v1" in doc
    assert endpoint_identity("http://H:1/v1/") == endpoint_identity("http://h:1/v1") == "http://h:1/v1"
