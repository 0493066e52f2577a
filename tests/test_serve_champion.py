"""GET /v1/champion: what production serves, followed within the cache's TTL, and a stable canary arm."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flywheel.arms import arm_for as arm_of
from flywheel.client import ClientError, FlywheelClient
from flywheel.config import load_settings
from live_server import LiveServer, make_key
from nonempty import every


def _until(read, wanted, seconds: float = 60):
    """Poll ``read()`` until it returns ``wanted`` (a bound for correctness, not a speed target)."""
    deadline = time.monotonic() + seconds
    while (got := read()) != wanted and time.monotonic() < deadline:
        time.sleep(0.1)
    return got


@pytest.fixture
def read_key(cli, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FLYWHEEL_SERVE__CHAMPION_TTL_SECONDS", "0.5")
    return make_key(cli, "product", "read")


def _version(client: FlywheelClient, user: str) -> str | None:
    try:
        return client.champion(user).prompt.version
    except ClientError:
        return None


def _prompt(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_champion_follows_prompt_set_and_rollback(cli, read_key: str, tmp_path: Path) -> None:
    settings = load_settings()
    with LiveServer(settings) as live, FlywheelClient(live.url, read_key) as client:
        with pytest.raises(ClientError) as missing:
            client.champion("u1")
        assert missing.value.status == 404 and "prompt set" in str(missing.value)

        cli("prompt", "set", _prompt(tmp_path, "v1.txt", "You answer support questions briefly."), "--json")
        first = _until(lambda: _version(client, "u1"), "1")  # the cache held "no prompt" until its TTL passed
        assert first == "1"
        served = client.champion("u1")
        assert (served.arm, served.prompt.name, served.index, served.model) == (
            "production",
            settings.prompt_name,
            None,
            settings.target_model,
        )
        assert served.prompt.template == "You answer support questions briefly."

        cli("prompt", "set", _prompt(tmp_path, "v2.txt", "You answer support questions briefly and kindly."), "--json")
        assert _until(lambda: client.champion("u1").prompt.version, "2") == "2"
        assert client.champion("u1").prompt.template.endswith("kindly.")
        cli("rollback", "prompt")
        assert _until(lambda: client.champion("u1").prompt.version, "1") == "1"


def test_a_canary_alias_puts_a_stable_share_of_users_in_arm_canary(cli, read_key: str, tmp_path: Path) -> None:
    settings = load_settings()  # watch.canary_percent is 10: the percent the canary started with wins
    cli("prompt", "set", _prompt(tmp_path, "v1.txt", "You answer support questions briefly."), "--json")
    cli("prompt", "set", _prompt(tmp_path, "v2.txt", "You answer support questions in detail."), "--json")
    users = [f"user-{i}" for i in range(300)]
    with LiveServer(settings) as live, FlywheelClient(live.url, read_key) as client:
        assert {client.champion(u).arm for u in users[:50]} == {"production"}  # no canary: everyone production

        from flywheel.champions import champion
        from flywheel.state import open_state

        with open_state(settings) as state:  # version 1 back as a canary for 30% of users
            champion(settings, state, "prompt").start_canary("1", 30.0, by="test")
        assert _until(lambda: client.champion(users[0]).arm, arm_of(users[0], 30)) == arm_of(users[0], 30)
        time.sleep(0.6)  # past the TTL once more: every answer below comes from the read with the canary
        answers = {u: client.champion(u) for u in users}
        again = {u: client.champion(u).arm for u in users}
    canary = [u for u, a in answers.items() if a.arm == "canary"]
    assert again == {u: a.arm for u, a in answers.items()}  # sticky
    assert 0.2 < len(canary) / len(users) < 0.4
    assert {(a.prompt.version, a.index) for a in answers.values() if a.arm == "canary"} == {("1", None)}
    assert {(a.prompt.version, a.index) for a in answers.values() if a.arm == "production"} == {("2", None)}
    assert every(arm_of(u, 30) == a.arm for u, a in answers.items())
