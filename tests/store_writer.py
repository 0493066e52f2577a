"""One writer process of the concurrent-writers test: ``python store_writer.py URL BATCHES.json``.

Opens the store (migrating it, maybe at the same moment as the other writers), prints ``ready``,
waits for a line on stdin so all writers start together, adds its batches and prints, as JSON, the
event ids each ``add`` reported new."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta

from flywheel.feedback.store import open_store
from flywheel.schemas import StoredEvent

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def make_event(event_id: str) -> StoredEvent:
    """The same event for the same id in every process (ids are ``e<number>``)."""
    n = int(event_id.removeprefix("e"))
    return StoredEvent(
        event_id=event_id,
        ts=T0 + timedelta(seconds=n),
        signal="thumbs_down",
        polarity=-1,
        strength=1.0,
        query=f"question {n}",
        output=f"answer {n}",
        user_id=f"u{n % 13}",
    )


def main(url: str, batches_file: str) -> None:
    with open(batches_file) as fh:
        batches: list[list[str]] = json.load(fh)
    with open_store(url) as store:
        print("ready", flush=True)
        sys.stdin.readline()
        returned = [[e.event_id for e in store.add([make_event(i) for i in batch], "writer")] for batch in batches]
    print(json.dumps(returned), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
