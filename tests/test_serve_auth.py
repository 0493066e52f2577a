"""Keys: created once and shown once, stored only as salted hashes, scoped, revoked at once."""

from __future__ import annotations

import json

from conftest import event
from live_server import LiveServer, make_key


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
