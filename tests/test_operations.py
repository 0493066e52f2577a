"""The operators' smaller flows: `triage-feedback` and `promotion`, run as Prefect flows on the
session's test API, against the same state the CLI uses."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from flywheel.flows.operations import PromotionParameters, promotion, triage_feedback
from nonempty import every


def test_a_promotion_needs_what_its_action_needs() -> None:
    with pytest.raises(ValidationError, match="reject needs a note"):
        PromotionParameters(action="reject", candidate_id="prompt-1", by="ops")
    with pytest.raises(ValidationError, match="approve needs candidate_id"):
        PromotionParameters(action="approve", by="ops")
    with pytest.raises(ValidationError, match="rollback needs kind"):
        PromotionParameters(action="rollback", by="ops")
    with pytest.raises(ValidationError, match="by"):
        PromotionParameters(action="rollback", kind="prompt", by="")


def test_a_rollback_from_the_flow_restores_the_previous_prompt(cli, tmp_path: Path, prefect_api: str) -> None:
    from prefect.artifacts import Artifact

    first = cli("prompt", "set", str(_write(tmp_path / "v1.txt", "You are a helpful assistant.")), "--json")
    second = cli("prompt", "set", str(_write(tmp_path / "v2.txt", "You are a terse assistant.")), "--json")
    assert cli("status", "--json")["champions"]["prompt"] == second["version"]

    out = promotion(PromotionParameters(action="rollback", kind="prompt", by="ui-operator", note="v2 is curt"))
    assert (out["from_version"], out["to_version"], out["by"]) == (second["version"], first["version"], "ui-operator")
    assert cli("status", "--json")["champions"]["prompt"] == first["version"]
    record = Artifact.get("flywheel-promotion")
    assert f"v{second['version']} -> v{first['version']}" in record.data and "v2 is curt" in record.data
    # Nothing earlier to go back to: the flow fails with the CLI's reason and moves nothing.
    with pytest.raises(Exception, match="nothing to roll back"):
        promotion(PromotionParameters(action="rollback", kind="prompt", by="ui-operator"))
    assert cli("status", "--json")["champions"]["prompt"] == first["version"]


def test_triage_and_decisions_from_flows_match_the_cli(cli, loop: dict) -> None:
    from prefect.artifacts import Artifact

    from flywheel.config import load_settings
    from flywheel.state import open_state

    expected = cli("triage", "--json")["clusters"]
    clusters = triage_feedback()["clusters"]
    assert [c["cluster_id"] for c in clusters] == [c["cluster_id"] for c in expected]
    rows = Artifact.get("flywheel-triage").data
    assert every(c["cluster_id"] in rows for c in expected)

    out = cli("cycle", "--json")
    pending = {c["kind"]: c for c in out["candidates"] if c["decision"] == "pending_approval"}
    assert {"prompt", "rag"} <= set(pending)
    prompt, rag = pending["prompt"], pending["rag"]
    approved = promotion(PromotionParameters(action="approve", candidate_id=prompt["candidate_id"], by="ui-operator"))
    assert (approved["decision"], approved["decided_by"]) == ("promoted", "ui-operator")
    rejected = promotion(
        PromotionParameters(
            action="reject",
            candidate_id=rag["candidate_id"],
            by="ui-operator",
            note="the docs team reviews the index first",
        )
    )
    assert rejected["decision"] == "rejected"
    with open_state(load_settings()) as state:
        assert "the docs team reviews the index first" in state.candidate(rag["candidate_id"]).reason
    status = cli("status", "--json")
    assert status["champions"]["prompt"] == state_version(prompt["candidate_id"])
    assert "the docs team reviews the index first" in Artifact.get("flywheel-promotion").data
    # A decision taken already is not taken again.
    with pytest.raises(Exception, match=prompt["candidate_id"]):
        promotion(PromotionParameters(action="approve", candidate_id=prompt["candidate_id"], by="ui-operator"))


def state_version(candidate_id: str) -> str | None:
    from flywheel.config import load_settings
    from flywheel.state import open_state

    with open_state(load_settings()) as state:
        cand = state.candidate(candidate_id)
    return cand.version if cand else None


def _write(path: Path, text: str) -> Path:
    path.write_text(text + "\n", encoding="utf-8")
    return path
