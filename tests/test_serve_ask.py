"""POST /v1/ask and /v1/opt-out: the feedback-prompt policy, with a reason for every decision, a
daily cap per user that concurrent requests cannot overrun, and opt-outs that hold."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from flywheel.ask_ledger import AskLedger
from flywheel.client import ClientError, FlywheelClient
from flywheel.config import load_settings
from flywheel.config_sections import AskSettings
from flywheel.live import AskRequest
from flywheel.loop.ask import decide
from live_server import LiveServer, make_key


@pytest.fixture
def client(cli, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FLYWHEEL_ASK__FEATURES", '["new-editor"]')
    monkeypatch.setenv("FLYWHEEL_ASK__PER_USER_PER_DAY", "2")
    monkeypatch.setenv("FLYWHEEL_ASK__LONG_TASK_SECONDS", "30")
    key = make_key(cli, "product", "read")
    with LiveServer(load_settings()) as live, FlywheelClient(live.url, key) as fw:
        yield fw


def test_each_decision_has_its_reason(client: FlywheelClient) -> None:
    def decision(user: str, **kw) -> tuple[bool, str]:
        got = client.ask(user, **kw)
        return got.ask, got.reason.value

    assert decision("a", confidence=0.9) == (False, "no_trigger")
    assert decision("a") == (False, "no_trigger")
    low = client.ask("a", confidence=0.2)
    assert (low.ask, low.reason) == (True, "low_confidence") and "0.2" in low.detail
    assert decision("b", task_seconds=45) == (True, "long_task")
    assert decision("c", feature="new-editor") == (True, "feature_under_watch")
    assert decision("c", feature="settings") == (False, "no_trigger")
    assert decision("a", task_seconds=100) == (True, "long_task")  # a's second ask today
    capped = client.ask("a", confidence=0.1)
    assert (capped.ask, capped.reason) == (False, "daily_cap") and "2 times today" in capped.detail
    assert decision("a", confidence=0.9) == (False, "no_trigger")  # no trigger says so, capped or not


def test_an_opted_out_user_is_never_asked(client: FlywheelClient) -> None:
    assert client.ask("d", confidence=0.1).ask
    first, again = client.opt_out("d"), client.opt_out("d")
    assert (first.new, again.new, again.opted_out) == (True, False, True)
    for kw in ({"confidence": 0.0}, {"task_seconds": 1e6}, {"feature": "new-editor"}):
        got = client.ask("d", **kw)
        assert (got.ask, got.reason) == (False, "opted_out")


def test_bad_ask_bodies_are_422_and_never_retried(client: FlywheelClient) -> None:
    with pytest.raises(ClientError) as raised:
        client._send("POST", "/v1/ask", json={"user_id": "x", "confidence": 1.5}, idempotent=False)
    assert raised.value.status == 422
    with pytest.raises(ClientError) as raised:
        client._send("POST", "/v1/ask", json={"confidence": 0.1}, idempotent=False)
    assert raised.value.status == 422 and "user_id" in str(raised.value)


def test_a_422_says_where_and_why_but_never_echoes_what_was_sent(client: FlywheelClient) -> None:
    marker = "jane.roe+PII7@example.com"
    with pytest.raises(ClientError) as raised:
        client._send(
            "POST", "/v1/ask", json={"user_id": "x", "confidence": marker, "feature": [marker]}, idempotent=False
        )
    assert raised.value.status == 422 and "confidence" in str(raised.value) and marker not in str(raised.value)


def test_concurrent_asks_never_pass_the_daily_cap(client: FlywheelClient) -> None:
    answers: list[bool] = []

    def ask() -> None:
        answers.append(client.ask("busy-user", confidence=0.1).ask)

    threads = [threading.Thread(target=ask) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers.count(True) == 2 and len(answers) == 24


def test_the_cap_is_per_utc_day_and_users_are_stored_hashed(settings) -> None:
    settings.ensure_home()
    ledger = AskLedger(settings.resolved_store_url)
    policy = AskSettings(per_user_per_day=2)
    day1 = datetime(2026, 11, 10, 23, 59, tzinfo=UTC)
    req = AskRequest(user_id="ann@example.com", confidence=0.1)
    assert [decide(policy, req, ledger, day1).ask for _ in range(3)] == [True, True, False]
    assert decide(policy, req, ledger, day1 + timedelta(minutes=2)).ask  # a new UTC day
    assert ledger.asks("ann@example.com", day1.date()) == 0  # yesterday's row went with today's first ask
    ledger.opt_out("ann@example.com")
    ledger.close()
    assert b"ann@example.com" not in settings.store_path.read_bytes()


def test_workers_opening_the_ledger_at_once_all_get_their_answer(settings) -> None:
    """Several workers' first asks race to create the tables; none may fail for it, none pass the cap."""
    settings.ensure_home()
    ledgers = [AskLedger(settings.resolved_store_url) for _ in range(6)]
    answers: list[bool] = []
    threads = [
        threading.Thread(target=lambda ledger=ledger: answers.append(ledger.take_ask("u", datetime.now(UTC).date(), 3)))
        for ledger in ledgers
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [False, False, False, True, True, True]
    for ledger in ledgers:
        ledger.close()
