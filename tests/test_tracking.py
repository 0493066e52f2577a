"""The MLflow record against a real MLflow on a temporary SQLite store (issue 15): each variant's
run is linked to the prompt version it was evaluated with, and a draft's provenance lands on its
prompt version, never on the prompt's own tags (the prompt page's header)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flywheel.config import Settings
from flywheel.evals.golden import GoldenItem, GoldenSet, canonical_version
from flywheel.evals.pipeline import Variant
from flywheel.evals.runner import EvalResult, EvalRow
from flywheel.evals.tracking import cycle_run, experiment_id, log_variant
from flywheel.improvers.prompt_step import register_draft
from flywheel.loop.context import CycleContext
from flywheel.registry import register_prompt, use_mlflow

# MLflow's own keys on a prompt (it is a registered model underneath); everything else is ours.
_MLFLOW_PROMPT_TAGS = {"mlflow.prompt.is_prompt", "_mlflow_experiment_ids"}


def _golden(tmp_path: Path) -> GoldenSet:
    items = [GoldenItem(id="free", input="Is it free?", expected="no", category="factual", scorer="word")]
    path = tmp_path / "golden.jsonl"
    path.write_text("".join(i.model_dump_json() + "\n" for i in items))
    return GoldenSet(path=path, items=tuple(items), version=canonical_version(items))


def _result(golden: GoldenSet, label: str, prompt_version: str | None) -> EvalResult:
    variant = Variant(label=label, prompt_template="You answer briefly.", prompt_version=prompt_version, model="m")
    rows = [
        EvalRow(
            id="free",
            category="factual",
            input="Is it free?",
            expected="no",
            scorer="word",
            output="No.",
            score=1.0,
            rationale="has the words 'no'",
        )
    ]
    return EvalResult(variant=variant, golden_version=golden.version, rows=rows)


def _log(
    settings: Settings, golden: GoldenSet, kind: str, label: str, prompt_version: str | None, prompt_name: str | None
) -> str:
    client = use_mlflow(settings)
    exp = experiment_id(client, settings.experiment)
    parent = cycle_run(client, exp, "c-1")
    return log_variant(
        client,
        exp,
        parent,
        cycle_id="c-1",
        kind=kind,
        candidate_id=label,
        result=_result(golden, label, prompt_version),
        golden=golden,
        decision="evaluated",
        metrics={},
        params={},
        tags={},
        artifacts={},
        prompt_name=prompt_name,
    )


def _linked(settings: Settings, run_id: str) -> list[dict[str, Any]]:
    tag = use_mlflow(settings).get_run(run_id).data.tags.get("mlflow.linkedPrompts")
    return json.loads(tag) if tag else []


def _cycle(settings: Settings, cycle_id: str) -> CycleContext:
    return CycleContext(
        settings=settings,
        cycle_id=cycle_id,
        resumed=False,
        champion_version="1",
        champion_template="You answer briefly.",
        golden_version="g",
    )


def _prompt_tags(settings: Settings) -> dict[str, str]:
    prompt = use_mlflow(settings).get_prompt(settings.prompt_name)
    return {k: v for k, v in prompt.tags.items() if k not in _MLFLOW_PROMPT_TAGS}


def test_each_run_is_linked_to_the_prompt_version_it_was_evaluated_with(settings: Settings, tmp_path: Path) -> None:
    champion = register_prompt(settings, "You answer briefly.", "set", {"flywheel.set_by": "test"}).version
    draft = register_draft(_cycle(settings, "c-1"), "You answer briefly and never guess.", "a draft", {})
    golden = _golden(tmp_path)
    runs = {
        "champion": _log(settings, golden, "champion", "champion-c-1", champion, settings.prompt_name),
        "prompt": _log(settings, golden, "prompt", "prompt-x", draft, settings.prompt_name),
        "rag": _log(settings, golden, "rag", "rag-x", champion, settings.prompt_name),  # the champion's prompt
    }
    name = settings.prompt_name
    assert _linked(settings, runs["champion"]) == [{"name": name, "version": champion}]
    assert _linked(settings, runs["prompt"]) == [{"name": name, "version": draft}]
    assert _linked(settings, runs["rag"]) == [{"name": name, "version": champion}]
    assert champion != draft
    # The public search finds a version's runs by the same link.
    client = use_mlflow(settings)
    exp = experiment_id(client, settings.experiment)
    found = client.search_runs([exp], filter_string=f'tags.`mlflow.linkedPrompts` LIKE \'%"version": "{draft}"%\'')
    assert [r.info.run_id for r in found] == [runs["prompt"]]


def test_a_resumed_run_is_not_linked_twice(settings: Settings, tmp_path: Path) -> None:
    version = register_prompt(settings, "You answer briefly.", "set", {}).version
    golden = _golden(tmp_path)
    first = _log(settings, golden, "champion", "champion-c-1", version, settings.prompt_name)
    assert _log(settings, golden, "champion", "champion-c-1", version, settings.prompt_name) == first
    assert _linked(settings, first) == [{"name": settings.prompt_name, "version": version}]


@pytest.mark.parametrize(
    ("prompt_name", "version"), [(None, "1"), ("assistant-system", None), ("assistant-system", "99")]
)
def test_no_link_without_a_name_a_version_or_a_registered_version(
    settings: Settings, tmp_path: Path, prompt_name: str | None, version: str | None
) -> None:
    register_prompt(settings, "You answer briefly.", "set", {})
    # A version the registry lacks is logged and skipped: the run and its metrics are still there.
    run_id = _log(settings, _golden(tmp_path), "champion", "champion-c-1", version, prompt_name)
    assert _linked(settings, run_id) == []
    assert use_mlflow(settings).get_run(run_id).data.metrics["golden_score"] == 1.0


def test_a_drafts_provenance_stays_on_its_version_not_on_the_prompt(settings: Settings) -> None:
    first = register_prompt(settings, "You answer briefly.", "brought in", {"flywheel.set_by": "ana"})
    header = _prompt_tags(settings)
    assert header == {}  # no version's provenance describes the prompt
    provenance = {
        "flywheel.cluster_ids": "cl-1",
        "flywheel.parent_version": first.version,
        "flywheel.screening": "0.8",
        "flywheel.kept": "true",
        "flywheel.round": "2",
    }
    drafts = [
        register_draft(_cycle(settings, f"c-{n}"), f"You answer briefly. Rule {n}.", f"draft {n}", provenance)
        for n in (1, 2)
    ]
    assert _prompt_tags(settings) == header
    client = use_mlflow(settings)
    assert client.get_prompt_version(settings.prompt_name, first.version).tags == {"flywheel.set_by": "ana"}
    for n, version in enumerate(drafts, start=1):
        tags = client.get_prompt_version(settings.prompt_name, version).tags
        assert tags["flywheel.cycle_id"] == f"c-{n}" and tags["flywheel.draft_id"]
        assert {k: tags[k] for k in provenance} == provenance
    # Found again by its draft id, not registered twice.
    assert register_draft(_cycle(settings, "c-2"), "You answer briefly. Rule 2.", "again", provenance) == drafts[1]
    assert len(client.search_prompt_versions(settings.prompt_name)) == 3
