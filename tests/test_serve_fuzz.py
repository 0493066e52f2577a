"""Fuzzed bodies for POST /v1/feedback: whatever arrives, the answer is a 2xx or a clear 4xx, never a
5xx, and exactly the events the answers say were accepted are stored."""

from __future__ import annotations

import json
import os
import random
from collections import Counter

from conftest import event
from live_server import LiveServer, make_key, stored_ids

CASES = int(os.environ.get("FLYWHEEL_FUZZ_CASES", "600"))  # more for a longer run by hand
_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    1e308,
    "",
    "x",
    "thumbs_up",
    "\u0000",
    "\ud800",
    "é" * 50,
    [],
    {},
    [1, [2]],
    {"a": {"b": None}},
    "2026-11-10T10:00:00Z",
    "not a date",
    10**30,
]


def _value(rng: random.Random, depth: int = 0):
    if depth < 6 and rng.random() < 0.3:
        return (
            [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
            if rng.random() < 0.5
            else {
                rng.choice(["a", "event_id", "metadata", "ts"]): _value(rng, depth + 1)
                for _ in range(rng.randint(0, 3))
            }
        )
    return rng.choice(_VALUES)


def _mutated_event(rng: random.Random, i: int) -> dict:
    e = event(f"f{i}", comment="mail ann@example.com", metadata={"k": [1, 2]})
    for _ in range(rng.randint(0, 3)):
        field = rng.choice([*e, "extra", "value", "reason", "confidence", "arm"])
        if rng.random() < 0.2:
            e.pop(field, None)
        else:
            e[field] = _value(rng)
    return e


def _body(rng: random.Random, i: int) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:  # a structurally fine event with mutated fields
        return json.dumps(_mutated_event(rng, i)).encode()
    if kind == 1:  # a batch mixing good, mutated and random items
        items = [rng.choice([event(f"f{i}-{j}"), _mutated_event(rng, i * 10 + j), _value(rng)]) for j in range(5)]
        return json.dumps({"events": items}).encode()
    raw = bytearray(json.dumps({"events": [event(f"f{i}-a"), event(f"f{i}-b")]}).encode())
    if kind == 2:  # bytes flipped
        for _ in range(rng.randint(1, 8)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw)
    if kind == 3:  # cut short
        return bytes(raw[: rng.randrange(len(raw))])
    if kind == 4:  # random bytes inserted
        at = rng.randrange(len(raw))
        return bytes(raw[:at]) + rng.randbytes(rng.randint(1, 20)) + bytes(raw[at:])
    return json.dumps(_value(rng)).encode()  # any JSON value at all


def test_fuzzed_bodies_get_a_clear_answer_and_store_exactly_what_was_accepted(cli, settings) -> None:
    rng = random.Random(16)
    key = make_key(cli, "fuzz", "ingest")
    statuses: Counter[int] = Counter()
    accepted = 0
    with LiveServer(settings) as live, live.http(key) as http:
        for i in range(CASES):
            body = _body(rng, i)
            answer = http.post("/v1/feedback", content=body, headers={"Content-Type": "application/json"})
            statuses[answer.status_code] += 1
            assert answer.status_code in (200, 400, 413, 422), (body[:300], answer.status_code, answer.text[:300])
            doc = answer.json()
            if answer.status_code in (200, 422):
                assert doc["rejected"] == len(doc["errors"])
                if answer.status_code == 422:  # a single event, rejected
                    assert (doc["accepted"], doc["duplicates"], doc["rejected"]) == (0, 0, 1)
                accepted += doc["accepted"]
            else:
                assert isinstance(doc["detail"], str) and doc["detail"]
        assert http.get("/healthz").status_code == 200
    print(f"fuzz: {CASES} bodies, answers {dict(sorted(statuses.items()))}, {accepted} events accepted")
    assert len(stored_ids(settings)) == accepted
    assert len(statuses) >= 3  # the cases reach the validation, the body checks and the store
