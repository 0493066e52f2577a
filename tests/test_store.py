"""The feedback store on both dialects (a SQLite file; a real PostgreSQL server the test setup
starts): idempotency, exactly-this-call's new events, order and filters, counts, one transaction per
batch, concurrent writers in separate processes, and the errors a caller sees."""

from __future__ import annotations

import dataclasses
import json
import random
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from conftest import event, write_jsonl
from flywheel.errors import FlywheelError, StoreUnavailable, UsageError
from flywheel.feedback.store import open_store
from flywheel.schemas import StoredEvent
from nonempty import every
from pg_server import PostgresServer, free_port
from store_writer import make_event

WRITER = Path(__file__).with_name("store_writer.py")
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def ev(event_id: str, seconds: float = 0, **fields) -> StoredEvent:
    base = {
        "ts": T0 + timedelta(seconds=seconds),
        "signal": "thumbs_down",
        "polarity": -1,
        "strength": 1.0,
        "query": f"q {event_id}",
        "output": f"o {event_id}",
    }
    return StoredEvent(event_id=event_id, **(base | fields))


def ids(events) -> list[str]:
    return [e.event_id for e in events]


def test_add_is_idempotent_and_returns_exactly_the_new_events(any_store_url: str) -> None:
    with open_store(any_store_url) as store:
        first = store.add([ev("b"), ev("a"), ev("b", query="a second copy"), ev("c")], "one")
        assert ids(first) == ["b", "a", "c"]  # input order; the repeated b is a duplicate, not new
        assert store.add([ev("a"), ev("c")], "two") == []
        assert ids(store.add([ev("d"), ev("a"), ev("e")], "three")) == ["d", "e"]
        assert store.add([], "empty") == []
        assert store.counts()["events"] == 5
        (b,) = store.get(["b"])
    assert b.query == "q b"  # the first copy was stored


def test_events_come_oldest_first_then_by_id_filtered_by_polarity_and_since(any_store_url: str) -> None:
    plus_two = timezone(timedelta(hours=2))
    batch = [
        ev("late", 30),
        ev("same-b", 10),
        ev("same-a", 10, polarity=1, signal="thumbs_up"),
        # 01:00 on Nov 1 at +02:00 is 23:00 UTC the day before: the oldest, whatever its text says
        ev("early", ts=datetime(2026, 11, 1, 1, 0, tzinfo=plus_two)),
        ev("mid", 20, polarity=0, signal="copy"),
    ]
    with open_store(any_store_url) as store:
        assert store.newest_ts() is None
        store.add(batch, "test")
        assert ids(store.events()) == ["early", "same-a", "same-b", "mid", "late"]
        assert ids(store.events(polarity=-1)) == ["early", "same-b", "late"]
        assert ids(store.events(since=T0 + timedelta(seconds=10))) == ["mid", "late"]  # strictly after
        assert ids(store.events(polarity=-1, since=T0)) == ["same-b", "late"]
        (early,) = store.get(["early"])
        assert store.newest_ts() == T0 + timedelta(seconds=30)  # by the event's time, not the insert order
    assert early.ts == datetime(2026, 10, 31, 23, 0, tzinfo=UTC)


def test_every_field_round_trips(any_store_url: str) -> None:
    full = ev(
        "full",
        5,
        signal="edit",
        polarity=-1,
        strength=0.75,
        user_id="u1",
        session_id="s1",
        consent=True,
        prompt_version="3",
        model="m",
        index_version="7",
        arm="canary",
        confidence=0.25,
        reason="wrong",
        comment="Ça coûte 12 €",
        correction="c",
        final_text="f",
        value=4.5,
        context_ids=["d1", "d2"],
        metadata={"clé": ["ü", 1, None]},
        pii_scrubbed=["phone", "email"],
    )
    with open_store(any_store_url) as store:
        store.add([full, ev("bare")], "test")
        got = {e.event_id: e for e in store.events()}
    assert got["full"] == dataclasses.replace(full, pii_scrubbed=["email", "phone"])  # kinds kept sorted
    assert got["bare"] == ev("bare")


def test_streaming_get_and_counts_over_many_events(any_store_url: str) -> None:
    rng = random.Random(7)
    batch = [
        ev(f"e{i:05d}", rng.randrange(1000), polarity=rng.choice([-1, 0, 1]), consent=i % 3 == 0) for i in range(4500)
    ]  # more than one fetch batch of the stream, more than one IN (...) chunk
    with open_store(any_store_url) as store:
        assert len(store.add(batch, "bulk")) == 4500
        streamed = list(store.events())
        wanted = [f"e{i:05d}" for i in range(0, 4500, 3)] + ["nope"]
        got = store.get(wanted)
        counts = store.counts()
        since_start = store.count_ingested_since(0)
        negative_since = store.count_ingested_since(0, polarity=-1)
        after_now = store.count_ingested_since(datetime.now(UTC).timestamp() + 60)
    assert ids(streamed) == ids(sorted(batch, key=lambda e: (e.ts, e.event_id)))
    assert sorted(ids(got)) == wanted[:-1]
    negative = sum(e.polarity < 0 for e in batch)
    assert counts == {
        "events": 4500,
        "negative": negative,
        "positive": sum(e.polarity > 0 for e in batch),
        "consented": 1500,
    }
    assert (since_start, negative_since, after_now) == (4500, negative, 0)


def test_a_batch_is_one_transaction_never_half_stored(any_store_url: str) -> None:
    broken = ev("zz-last", query=None)  # type: ignore[arg-type]  - NOT NULL fails on the batch's last row
    with open_store(any_store_url) as store:
        with pytest.raises(FlywheelError, match="cannot be written"):
            store.add([ev("a"), ev("b"), broken], "test")
        assert store.counts()["events"] == 0
        assert ids(store.add([ev("a"), ev("b")], "again")) == ["a", "b"]


_INSERT_ONE = (
    "INSERT INTO events (event_id, ts, ts_epoch, signal, polarity, strength, consent, query, output, "
    "ingested_at) VALUES (%s, 't', 0, 's', 0, 0, 0, 'q', 'o', 0)"
)


def test_a_writer_blocked_past_the_timeout_gets_store_unavailable(any_store_url: str) -> None:
    """Another transaction holds the lock: the write waits its timeout, then reports the store
    unavailable (the HTTP service's 503), and none of its batch is stored."""
    with open_store(any_store_url, lock_timeout=0.2) as store:  # the default (30 s) binds at definition
        url = store.url
        if store.dialect == "sqlite":
            holder = sqlite3.connect(str(url.database), isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
        else:
            holder = psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
            holder.execute(_INSERT_ONE, ("held",))
        try:
            with pytest.raises(StoreUnavailable, match="is unavailable"):
                store.add([ev("free"), ev("held")], "blocked")
        finally:
            holder.rollback()
            holder.close()
        assert store.counts()["events"] == 0
        assert ids(store.add([ev("free"), ev("held")], "later")) == ["free", "held"]


def test_writers_with_overlapping_batches_in_opposite_orders_do_not_deadlock(postgres: PostgresServer) -> None:
    """Another writer holds "a" and then wants "b"; our batch has both, "b" first. Rows go in id
    order, so ours waits on "a" before it takes "b", and the other writer finishes (in input order
    ours would hold "b" while waiting on "a": a deadlock, and one of the two aborted)."""
    name = postgres.create_database()
    with open_store(postgres.url(name)) as store:
        other = psycopg.connect(postgres.url(name))
        other.execute(_INSERT_ONE, ("a",))
        result: dict[str, object] = {}
        writer = threading.Thread(target=lambda: result.update(new=store.add([ev("b"), ev("a")], "ours")))
        writer.start()
        with psycopg.connect(postgres.url(name), autocommit=True) as watcher:
            while not watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'", (name,)
            ).fetchone()[0]:
                assert writer.is_alive(), result
                time.sleep(0.02)  # until our add waits for the other writer's lock
        other.execute(_INSERT_ONE, ("b",))
        other.commit()
        other.close()
        writer.join()
        assert result["new"] == []  # both were the other writer's
        assert store.counts()["events"] == 2


def test_a_postgres_database_gone_after_open_is_store_unavailable(postgres: PostgresServer) -> None:
    name = postgres.create_database()
    with open_store(postgres.url(name)) as store:
        store.add([ev("a")], "test")
        with psycopg.connect(postgres.url(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{postgres.port}/{name}"):
            store.add([ev("b")], "test")
        with pytest.raises(StoreUnavailable):
            list(store.events())


def test_an_unreachable_postgres_is_a_one_line_error_naming_the_host_not_the_password() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(StoreUnavailable) as caught:
        open_store(f"postgresql://flywheel:s3cret-pw@127.0.0.1:{port}/feedback")
    message = str(caught.value)
    assert f"postgresql://flywheel@127.0.0.1:{port}/feedback is unavailable" in message
    assert "refused" in message.lower()
    assert "s3cret-pw" not in message and "\n" not in message


def test_store_urls_postgres_forms_accepted_others_refused(postgres: PostgresServer) -> None:
    name = postgres.create_database()
    for scheme in ("postgresql", "postgresql+psycopg", "postgres"):
        with open_store(postgres.url(name, scheme)) as store:
            assert store.dialect == "postgresql"
            store.add([ev(scheme)], "test")
    with open_store(postgres.url(name)) as store:
        assert store.counts()["events"] == 3
    for url in ("mysql://u@h/db", "postgresql+psycopg2://u@h/db", "sqlite://"):
        with pytest.raises(UsageError, match="store_url"):
            open_store(url)


def _run_writers(url: str, plans: list[list[list[str]]], tmp_path: Path) -> list[list[list[str]]]:
    """Start one process per plan, let them all open the store, then release them together."""
    procs = []
    for n, plan in enumerate(plans):
        batches = tmp_path / f"writer{n}.json"
        batches.write_text(json.dumps(plan))
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WRITER), url, str(batches)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.stderr and p.stderr.read()
    outs = [p.communicate("go\n", timeout=180) for p in procs]
    for p, (_out, errors) in zip(procs, outs, strict=True):
        assert p.returncode == 0, errors
    return [json.loads(out) for out, _errors in outs]


def test_concurrent_writers_store_each_event_once_and_report_it_new_once(any_store_url: str, tmp_path: Path) -> None:
    """Four processes (like serve workers and the CLI) open a fresh store at once (migrating it under
    the lock) and add overlapping, shuffled batches: every event is stored once, and reported new
    by exactly one add."""
    rng = random.Random(16)
    plans = []
    for _ in range(4):
        chosen = rng.sample(range(600), 400)  # each writer: 2/3 of the ids, so every id is in several plans
        plans.append([[f"e{i}" for i in chosen[k : k + 40]] for k in range(0, len(chosen), 40)])
    distinct = {i for plan in plans for batch in plan for i in batch}
    returned = [i for result in _run_writers(any_store_url, plans, tmp_path) for batch in result for i in batch]
    assert len(returned) == len(set(returned))  # no event in two returns
    assert set(returned) == distinct
    with open_store(any_store_url) as store:
        stored = list(store.events())
    assert sorted(ids(stored)) == sorted(distinct)
    assert every(e == make_event(e.event_id) for e in stored)


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg"])
def test_flywheel_ingest_with_a_postgres_store_url(
    cli, postgres: PostgresServer, tmp_path: Path, monkeypatch, flywheel_home: Path, scheme: str
) -> None:
    url = postgres.url(postgres.create_database(), scheme)
    monkeypatch.setenv("FLYWHEEL_STORE_URL", url)
    src = write_jsonl(
        tmp_path / "fb.jsonl",
        [event(f"e{i}", user_id=f"u{i}") for i in range(30)]
        + [event("e0"), event("p1", signal="thumbs_up"), "not json"],
    )
    first = cli("ingest", str(src), "--json")
    assert (first["accepted"], first["duplicates"], first["rejected"], first["negative"]) == (31, 1, 1, 30)
    again = cli("ingest", str(src), "--json")
    assert (again["accepted"], again["duplicates"]) == (0, 32)
    assert cli("config", "--json")["resolved"]["store_url"] == url
    with open_store(url) as store:
        assert store.counts() == {"events": 31, "negative": 30, "positive": 1, "consented": 31}
    assert not (flywheel_home / "feedback.sqlite").exists()  # nothing went to the default store


def test_flywheel_ingest_with_an_unreachable_postgres_exits_1_with_one_line(cli, tmp_path: Path, monkeypatch) -> None:
    port = free_port()
    monkeypatch.setenv("FLYWHEEL_STORE_URL", f"postgresql://fw:hunter2@127.0.0.1:{port}/fw")
    out = cli("ingest", str(write_jsonl(tmp_path / "fb.jsonl", [event("e1")])), "--json", expect=1)
    assert out["error"].startswith(f"feedback store postgresql://fw@127.0.0.1:{port}/fw is unavailable")
    assert "hunter2" not in cli.last.stdout + cli.last.stderr


def test_rated_gives_the_watch_its_rows_on_both_dialects(any_store_url: str) -> None:
    with open_store(any_store_url) as store:
        store.add(
            [
                ev("neg", 1, user_id="u1", arm="canary", prompt_version="3", model="m"),
                ev("pos", 2, polarity=1, signal="thumbs_up", user_id="u2", query="other"),
                ev("neutral", 3, polarity=0, signal="copy"),
            ],
            "test",
        )
        rows = sorted(store.rated().rows(), key=lambda r: r[1])
        assert [(r[0], r[2], r[3], r[4], r[5], r[7]) for r in rows] == [
            (None, 1, "u1", "canary", "3", "m"),
            (None, 0, "u2", None, None, None),
        ]  # no neutral, no ids
        assert store.rated(versions=()).prompt_version == (None, None)
        assert store.rated(versions=()).model == (None, None)
        assert store.rated(queries=["q neg", "unknown"]).event_id == ("neg",)
        empty = store.rated(since=(T0 + timedelta(seconds=2)).timestamp(), queries=["q neg"])
        assert len(empty) == 0 and empty.event_id == ()
