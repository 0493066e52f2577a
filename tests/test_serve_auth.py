"""Keys: created once and shown once, stored only as salted hashes, scoped, revoked at once."""

from __future__ import annotations

import logging
import secrets
import shutil
import sqlite3
import statistics
import time
from pathlib import Path

import pytest

from conftest import event
from flywheel.client import FlywheelClient, ServiceUnavailable
from flywheel.config import load_settings
from flywheel.keys import KeyStore, open_keys
from live_server import LiveServer, make_key
from nonempty import every


def test_keys_are_shown_once_and_stored_only_hashed(cli, settings) -> None:
    created = cli("keys", "create", "product", "--scope", "ingest", "--json")
    assert set(created) == {"name", "scope", "key"} and created["key"].startswith("fw_")
    _, key_id, secret = created["key"].split("_", 2)
    with sqlite3.connect(settings.home / "state.sqlite") as db:  # the state store: one host's default
        at_rest = repr(db.execute("SELECT * FROM api_keys").fetchall())
    assert key_id in at_rest and secret not in at_rest and created["key"] not in at_rest
    assert not (settings.home / "keys.json").exists()
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
        for method, path in (
            ("POST", "/v1/feedback"),
            ("GET", "/v1/champion"),
            ("POST", "/v1/ask"),
            ("POST", "/v1/opt-out"),
            ("GET", "/metrics"),
        ):
            answer = anonymous.request(method, path)
            assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer", path
        forged = ingest[:-4] + ("aaaa" if not ingest.endswith("aaaa") else "bbbb")
        for bad in ("nonsense", "fw_x_y", forged):
            assert live.http(bad).post("/v1/feedback", json=event("e1")).status_code == 401
        assert (
            anonymous.post("/v1/feedback", json=event("e1"), headers={"Authorization": f"Basic {ingest}"}).status_code
            == 401
        )

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
    assert [k["revoked"] is not None for k in cli("keys", "list", "--json")["keys"]].count(True) == 1


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


# Written by the code that kept keys in keys.json (two keys; "reader" revoked): an old home's file.
LEGACY = Path(__file__).parent / "data" / "keys_v1.json"
LEGACY_PRODUCT = "fw_a5d627e59004_2774Zlbk7fW9xzswlP3zQXbmBzlYXpt-RaJdV7AxIi4"
LEGACY_READER = "fw_01121e1c9509_2I2EXAHWobbEPIoEs_hfimYWUNXJxW-xT1T1XaxLU0g"


def test_a_single_host_home_upgrades_in_place(cli, settings) -> None:
    """keys.json is imported into the key table once (by id: twice changes nothing), then renamed."""
    settings.home.mkdir(parents=True, exist_ok=True)
    shutil.copy(LEGACY, settings.home / "keys.json")
    listed = cli("keys", "list", "--json")["keys"]
    assert [(k["name"], k["scope"], k["revoked"] is not None) for k in listed] == [
        ("product", "ingest", False),
        ("reader", "read", True),
    ]
    assert not (settings.home / "keys.json").exists() and (settings.home / "keys.json.imported").exists()
    cli("keys", "revoke", "product")
    shutil.copy(LEGACY, settings.home / "keys.json")  # imported again: a row already there wins
    assert [k["revoked"] is not None for k in cli("keys", "list", "--json")["keys"]] == [True, True]
    make_key(cli, "product", "ingest")  # the name is free again
    assert len(cli("keys", "list", "--json")["keys"]) == 3


def test_an_old_key_keeps_working_after_the_upgrade(cli, settings) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    shutil.copy(LEGACY, settings.home / "keys.json")
    with LiveServer(settings) as live:  # the server imports it on its first request
        assert live.http(LEGACY_PRODUCT).post("/v1/feedback", json=event("e1")).status_code == 200
        assert live.http(LEGACY_READER).get("/v1/champion").status_code == 401  # revoked before: still
        cli("keys", "revoke", "product")
        assert live.http(LEGACY_PRODUCT).post("/v1/feedback", json=event("e2")).status_code == 401


def test_a_corrupt_key_file_to_import_is_503_and_not_ready_until_fixed(cli, settings, caplog) -> None:
    key = make_key(cli, "product", "ingest")
    path = settings.home / "keys.json"
    good = LEGACY.read_text()
    with LiveServer(settings) as live:
        http = live.http(key)
        assert http.post("/v1/feedback", json=event("e1")).status_code == 200
        path.write_text(good[: len(good) // 2])  # a half-copied old home, say
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
        assert live.http(LEGACY_PRODUCT).post("/v1/feedback", json=event("e3")).status_code == 200


def test_a_revocation_by_another_host_counts_at_once(any_store_url, flywheel_home) -> None:
    """Two key stores on one URL (two replicas, or the CLI and a replica): a key verified and memoised
    by one is refused by it on the next lookup once the other revoked it. Prints what the per-request
    row read costs on the dialect."""
    server, other = KeyStore(any_store_url), KeyStore(any_store_url)
    try:
        key = other.create("product", "read")
        assert server.verify(key) is not None  # scrypt once, then memoised
        rounds = 300
        started = time.perf_counter()
        for _ in range(rounds):
            record, passed = server.lookup(key)
            assert record is not None and passed
        per_request = (time.perf_counter() - started) / rounds
        other.revoke("product")
        assert server.lookup(key) == (None, False) and server.verify(key) is None
        dialect = any_store_url.split(":", 1)[0]
        print(f"\nkey check per request on {dialect}: {per_request * 1e6:.0f} us (row read + memo)")
        assert per_request < 0.005, per_request
    finally:
        server.close()
        other.close()


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
