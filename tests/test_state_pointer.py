"""Pointers edited by several writers at once (the runs waiting for approval, the watch's journal)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from flywheel.state import open_state


def test_concurrent_edits_of_one_pointer_all_survive_on_each_dialect(any_store_url: str, flywheel_home: Path) -> None:
    """Each writer has its own store (its own connections, as another process would): every entry
    added is there at the end, and an entry removed by one writer stays removed."""
    writers, each = 4, 8
    stores = [open_state(flywheel_home, any_store_url) for _ in range(writers)]
    errors: list[BaseException] = []

    def add(store_index: int) -> None:
        try:
            for n in range(each):

                def change(raw: str | None, entry: str = f"w{store_index}-{n}") -> str | None:
                    entries = json.loads(raw) if raw else []
                    time.sleep(0.002)  # between the read and the write: where another writer would slip in
                    return json.dumps([*entries, entry])

                stores[store_index].update_pointer("shared", change)
        except BaseException as exc:  # reported below, with the writer's thread gone
            errors.append(exc)

    try:
        threads = [threading.Thread(target=add, args=(i,)) for i in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        raw = stores[0].pointer("shared")
        assert raw is not None
        assert sorted(json.loads(raw)) == sorted(f"w{i}-{n}" for i in range(writers) for n in range(each))

        kept = stores[1].update_pointer(
            "shared", lambda raw: json.dumps([e for e in json.loads(raw or "[]") if e[1] != "0"])
        )
        assert kept is not None and stores[2].pointer("shared") == kept and "w0-0" not in kept
        assert stores[3].update_pointer("shared", lambda raw: None) is None
        assert stores[0].pointer("shared") is None  # None clears it
    finally:
        for store in stores:
            store.close()
