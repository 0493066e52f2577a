"""Keys: created once and shown once, stored only as salted hashes, scoped, revoked at once."""

from __future__ import annotations

import json
import logging
import secrets
import statistics
import time

import pytest

from conftest import event
from flywheel.client import FlywheelClient, ServiceUnavailable
from flywheel.config import load_settings
from flywheel.keys import open_keys
from live_server import LiveServer, make_key
from nonempty import every


def test_keys_are_shown_once_and_stored_only_hashed(cli, settings) -> None:
    created = cli("keys", "create", "product", "--scope", "ingest", "--json")
    assert set(created) == {"name", "scope", "key"} and created["key"].startswith("fw_")
    _, key_id, secret = created["key"].split("_", 2)
    at_rest = (settings.home / "keys.json").read_text()
    assert key_id in at_rest and secret not in at_rest and created["key"] not in at_rest
    assert oct((settings.home / "keys.json").stat().st_mode & 0o777) == "0o600"
    listed = cli("keys", "list", "--json")["keys"]
    assert [(k["name"], k["scope"], k["revoked"]) for k in listed] == [("product", "ingest", None)]
    assert not {"hash", "salt", "key"} & set(listed[0])
    assert created["key"] not in cli("keys", "list").stdout


def test_key_names_and_scopes_are_checked(cli) -> None:
    make_key(cli, "product", "read")
    assert "exists" in cli("keys", "create", "product", "--scope", "read", "--json", expect=2)["error"]
    assert "--scope" in cli("keys", "create", "other", "--scope", "root", "--json", expect=2)["error"]
    assert "name" in cli("keys", "create", "a b", "--scope", "read", "--json", expect=2)["error"]
    assert "no active key" in cli("keys", "revoke", "nobody", "--json", expect=2)["error"]


def test_no_key_unknown_key_wrong_scope_and_revoked(cli, settings) -> None:
    ingest, read, admin = (make_key(cli, n, n) for n in ("ingest", "read", "admin"))
    with LiveServer(settings) as live:
        anonymous = live.http()
        assert anonymous.get("/healthz").status_code == 200
        for method, path in (("POST", "/v1/feedback"), ("GET", "/v1/champion"), ("POST", "/v1/ask"),
                             ("POST", "/v1/opt-out"), ("GET", "/metrics")):
            answer = anonymous.request(method, path)
            assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer", path
        forged = ingest[:-4] + ("aaaa" if not ingest.endswith("aaaa") else "bbbb")
        for bad in ("nonsense", "fw_x_y", forged):
            assert live.http(bad).post("/v1/feedback", json=event("e1")).status_code == 401
        assert anonymous.post("/v1/feedback", json=event("e1"), headers={"Authorization": f"Basic {ingest}"}) \
            .status_code == 401

        assert live.http(read).post("/v1/feedback", json=event("e1")).status_code == 403
        assert live.http(ingest).post("/v1/ask", json={"user_id": "u"}).status_code == 403
        assert live.http(ingest).get("/metrics").status_code == 403
        assert live.http(ingest).post("/v1/feedback", json=event("e1")).status_code == 200
        assert live.http(admin).post("/v1/feedback", json=event("e2")).status_code == 200  # admin: every scope
        assert live.http(admin).post("/v1/ask", json={"user_id": "u"}).status_code == 200
        for key in (ingest, read):  # opting out is open to any product key
            assert live.http(key).post("/v1/opt-out", json={"user_id": "u"}).status_code == 200

        assert live.http(ingest).post("/v1/feedback", json=event("e3")).status_code == 200  # verified: memoised
        cli("keys", "revoke", "ingest")
        refused = live.http(ingest).post("/v1/feedback", json=event("e4"))
        assert refused.status_code == 401 and ingest not in refused.text
        assert live.http(admin).post("/v1/feedback", json=event("e5")).status_code == 200
        make_key(cli, "ingest", "ingest")  # the name again: a new key; the revoked one stays refused
        assert live.http(ingest).post("/v1/feedback", json=event("e6")).status_code == 401
    assert json.loads((settings.home / "keys.json").read_text())["keys"][0]["revoked"]


def test_a_wrong_secret_costs_what_a_right_key_does(settings) -> None:
    """Once a key passed scrypt in a worker, any other secret for its id is refused by the same hash
    comparison: no scrypt to time, so wrong, right and unknown keys answer alike."""
    store = open_keys(settings.home)
    key = store.create("product", "read")
    _, key_id, _ = key.split("_", 2)
    started = time.perf_counter()
    assert store.verify(key) is not None  # first use: scrypt
    scrypt = time.perf_counter() - started

    def median_seconds(presented: list[str]) -> float:
        times = []
        for one in presented:
            started = time.perf_counter()
            store.verify(one)
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    wrong = [f"fw_{key_id}_{secrets.token_urlsafe(32)}" for _ in range(7)]
    unknown = [f"fw_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}" for _ in range(7)]
    assert every(store.verify(k) is None for k in wrong + unknown)
    figures = {"right": median_seconds([key] * 7), "wrong": median_seconds(wrong), "unknown": median_seconds(unknown)}
    assert max(figures.values()) < min(scrypt / 5, 0.005), (scrypt, figures)


def test_a_corrupt_key_file_is_503_and_not_ready_until_fixed(cli, settings, caplog) -> None:
    key = make_key(cli, "product", "ingest")
    path = settings.home / "keys.json"
    good = path.read_text()
    with LiveServer(settings) as live:
        http = live.http(key)
        assert http.post("/v1/feedback", json=event("e1")).status_code == 200
        path.write_text(good[: len(good) // 2])  # a half-written copy, say
        health = live.http().get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        assert "keys.json" in health.json()["reason"]
        for i in range(3):
            answer = http.post("/v1/feedback", json=event(f"c{i}"))
            assert answer.status_code == 503 and "keys.json" in answer.json()["detail"], answer.text
            assert answer.headers["retry-after"] == str(settings.serve.retry_after_seconds)
        assert live.http().get("/v1/champion").status_code == 401  # no key: nothing to check
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "key file" in errors[0].getMessage() and errors[0].exc_info is None
        path.write_text(good)
        assert live.http().get("/healthz").status_code == 200
        assert http.post("/v1/feedback", json=event("e2")).status_code == 200


def test_the_rate_limit_per_key_answers_429_with_retry_after(cli, monkeypatch) -> None:
    monkeypatch.setenv("FLYWHEEL_SERVE__RATE_LIMIT", "3/minute")
    first, second = make_key(cli, "first", "read"), make_key(cli, "second", "read")
    with LiveServer(load_settings()) as live:
        busy = live.http(first)
        assert live.http(first[:-2] + "zz").get("/metrics").status_code == 401  # not counted against it
        assert [busy.get("/metrics").status_code for _ in range(3)] == [200, 200, 200]
        refused = busy.post("/v1/ask", json={"user_id": "u"})
        assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
        assert "rate_limit" in refused.json()["detail"] and first not in refused.text
        assert live.http(second).get("/metrics").status_code == 200  # each key has its own allowance
        with (
            FlywheelClient(live.url, first, retries=1, max_wait=0.05) as fw,  # it waits, then gives up
            pytest.raises(ServiceUnavailable) as still,
        ):
            fw.ask("u")
        assert still.value.status == 429


def test_the_rate_limit_is_off_by_default_and_checked(monkeypatch) -> None:
    assert load_settings().serve.rate_limit is None
    monkeypatch.setenv("FLYWHEEL_SERVE__RATE_LIMIT", "many per second")
    with pytest.raises(Exception, match="not a rate limit"):
        load_settings()
