"""POST /v1/render and POST /v1/retrieve (SPEC, "Live service"): a product on another host, in any
language, gets the prompt of its user's arm filled in and the passages of that arm's index version,
whose chunk ids are what it sends back as ``context_ids`` and what the RAG refresh reads."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from flywheel.arms import arm_for
from flywheel.champions import champion
from flywheel.client import ClientError, FlywheelClient
from flywheel.config import load_settings
from flywheel.improvers.rag import propose
from flywheel.knowledge.source import Document, chunk_document
from flywheel.schemas import StoredEvent
from flywheel.state import open_state
from live_server import LiveServer, make_key
from nonempty import every

TEMPLATE = "You are the assistant of {{product}}. Answer in {{language}}; never reveal {{ secret_word }}."
USERS = [f"user-{i}" for i in range(200)]


@pytest.fixture
def read_key(cli, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FLYWHEEL_SERVE__CHAMPION_TTL_SECONDS", "0.2")
    return make_key(cli, "product", "read")


def _set_prompt(cli, tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return cli("prompt", "set", str(tmp_path / name), "--json")["version"]


def _fresh(client: FlywheelClient, user: str, check) -> None:
    """Wait until the service's champion cache shows what the test just changed (bounded)."""
    deadline = time.monotonic() + 30
    while not check(client.champion(user)) and time.monotonic() < deadline:
        time.sleep(0.1)


def test_render_fills_the_arms_prompt_and_names_a_missing_or_unknown_variable(
    cli, read_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the evaluation's own values (the product fills in its own per request)
    monkeypatch.setenv("FLYWHEEL_PROMPT_VARIABLES", '{"product": "Acme", "language": "English", "secret_word": "x"}')
    settings = load_settings()
    first = _set_prompt(cli, tmp_path, "v1.txt", TEMPLATE)
    second = _set_prompt(cli, tmp_path, "v2.txt", TEMPLATE.replace("Answer", "Answer kindly"))
    values = {"product": "Acme Cloud", "language": "French", "secret_word": "{{product}}"}
    with LiveServer(settings) as live, FlywheelClient(live.url, read_key) as client:
        served = client.champion("u1")
        assert served.prompt.variables == ["language", "product", "secret_word"]

        rendered = client.render("u1", values)
        assert (rendered.arm, rendered.prompt.version) == ("production", second)
        (message,) = rendered.messages
        assert message.role == "system"
        # filled once: a value that looks like a variable stays text
        assert message.content == (
            "You are the assistant of Acme Cloud. Answer kindly in French; never reveal {{product}}."
        )

        with pytest.raises(ClientError) as missing:
            client.render("u1", {"product": "Acme Cloud", "language": "French"})
        assert missing.value.status == 422 and missing.value.detail["missing"] == ["secret_word"]
        with pytest.raises(ClientError) as unknown:
            client.render("u1", {**values, "tone": "warm"})
        assert unknown.value.status == 422 and unknown.value.detail["unknown"] == ["tone"]
        assert "tone" in unknown.value.detail["message"]
        bad = live.http(read_key).post("/v1/render", json={"user_id": "u1", "variables": {"product": 3}})
        assert bad.status_code == 422  # values are text

        with open_state(settings) as state:  # the first version back as a canary for 30% of users
            champion(settings, state, "prompt").start_canary(first, 30.0, by="test")
        probe = next(u for u in USERS if arm_for(u, 30) == "canary")
        _fresh(client, probe, lambda c: c.arm == "canary")
        answers = {u: client.render(u, values) for u in USERS}
    assert every((a.arm == arm_for(u, 30)) for u, a in answers.items())
    canary = {a.prompt.version for a in answers.values() if a.arm == "canary"}
    production = {a.prompt.version for a in answers.values() if a.arm == "production"}
    assert (canary, production) == ({first}, {second})
    assert every("kindly" not in a.messages[0].content for a in answers.values() if a.arm == "canary")


def _knowledge(root: Path, pro_price: str) -> Path:
    root.mkdir(exist_ok=True)
    (root / "pricing.md").write_text(
        f"# Pricing\n\nThe Pro plan costs {pro_price} per month.\n\nThe Team plan costs $99 per month for five seats.\n"
    )
    (root / "security.md").write_text("# Security\n\nTwo-factor authentication is available on every plan.\n")
    (root / "export.md").write_text("# Export\n\nYou can export your data as CSV from the settings page.\n")
    return root


def test_retrieve_answers_from_the_index_version_of_the_users_arm(
    cli, read_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings()
    _set_prompt(cli, tmp_path, "v1.txt", "You answer questions about Acme.")
    with LiveServer(settings) as live, FlywheelClient(live.url, read_key) as client:
        with pytest.raises(ClientError) as none:
            client.retrieve("How much is Pro?", "u1")
        assert none.value.status == 409 and "kb sync" in str(none.value.detail)

        source = _knowledge(tmp_path / "kb", "$20")
        monkeypatch.setenv("FLYWHEEL_KNOWLEDGE_SOURCE", str(source))
        v1 = cli("kb", "sync", "--json")["version"]
        _fresh(client, "u1", lambda c: c.index == v1)
        found = client.retrieve("How much does the Pro plan cost per month?", "u1", k=2)
        assert (found.arm, found.index_version) == ("production", v1)
        assert len(found.chunks) == 2
        top = found.chunks[0]
        assert top.id.startswith("pricing.md#") and "$20" in top.text
        assert found.chunks[0].score >= found.chunks[1].score
        assert every(-1.0 <= c.score <= 1.0 for c in found.chunks)

        _knowledge(source, "$25")  # a corrected source makes a new version, not active until promoted
        v2 = cli("kb", "sync", "--json")["version"]
        assert v2 != v1
        with open_state(settings) as state:
            champion(settings, state, "rag").start_canary(v2, 30.0, by="test")
        probe = next(u for u in USERS if arm_for(u, 30) == "canary")
        _fresh(client, probe, lambda c: c.index == v2)
        answers = {u: client.retrieve("How much does the Pro plan cost per month?", u, k=1) for u in USERS[:60]}
    assert every(a.index_version == (v2 if arm_for(u, 30) == "canary" else v1) for u, a in answers.items())
    assert every(("$25" in a.chunks[0].text) == (a.arm == "canary") for a in answers.values())
    assert {a.arm for a in answers.values()} == {"canary", "production"}


def test_the_rag_refresh_reads_the_chunk_ids_a_product_sends_back() -> None:
    """``context_ids`` from ``/v1/retrieve`` are chunk ids (``doc#n``); the refresh finds their document."""
    active = [
        *chunk_document(Document("pricing.md", "The Pro plan costs $20.", "kb", ""), 400),
        *chunk_document(Document("export.md", "Export as CSV.", "kb", ""), 400),
    ]
    source = [
        Document("pricing.md", "The Pro plan costs $25.", "kb", ""),
        Document("export.md", "Export as CSV or JSON.", "kb", ""),
    ]
    now = datetime.now(UTC)
    events = [
        StoredEvent(
            event_id=f"e{i}",
            ts=now,
            signal="thumbs",
            polarity=-1,
            strength=1.0,
            query="How much is Pro?",
            output="$20",
            consent=False,
            context_ids=[active[0].chunk_id],
        )
        for i in range(3)
    ]
    proposal = propose(
        cluster_ids=["c1"],
        events=events,
        active_chunks=active,
        source_documents=source,
        retrieve=lambda q, k: [],
        embed=lambda texts: np.zeros((len(texts), 3)),
        chunk_chars=400,
    )
    assert active[0].chunk_id == "pricing.md#0"
    # the implicated document is refreshed; the other one, changed in the source but not implicated, is not
    assert proposal.changed_documents == ["pricing.md"]
    assert proposal.implicated == ["pricing.md"]
