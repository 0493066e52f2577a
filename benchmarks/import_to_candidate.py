"""From where a team keeps its feedback to a candidate (evidence for issue 30's closing note; run by
hand: ``python -m benchmarks.import_to_candidate``, minutes, not in the suite).

The demo world's feedback (`flywheel sim world DIR` writes feedback.jsonl) is ingested directly, and
the events that ingest accepted are turned into each source's native form and imported instead:

- mlflow: MLflow traces with a person's assessment each, then `flywheel import mlflow --experiment`;
- otlp: an OTLP JSON file of GenAI spans with `gen_ai.evaluation.result` events, `flywheel import otlp`;
- traces: the same spans protobuf-encoded, POSTed to `flywheel serve`'s `/v1/traces` with an ingest key;
- langfuse: Langfuse traces and scores on the local Langfuse API (:mod:`benchmarks.langfuse_api`),
  `flywheel import langfuse`.

Each goes into a fresh FLYWHEEL_HOME set up like the demo's (the world's prompt, knowledge, golden
set, the simulator as endpoint), then `flywheel triage --json` and one `flywheel cycle --json`
against the simulator. Printed per source: what the import counted, the clusters and the candidates,
beside the direct ingest; and what each mapping drops: every field of the directly stored event
compared with the one the source's import stored for the same line (matched by the ids the native
forms are written with), counted over the events. Written to benchmarks/out/import_to_candidate.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks._util import BIN, OUT
from benchmarks.bench_serve import Server
from benchmarks.import_data import (
    LangfuseServer,
    child_env,
    jsonl,
    native_event_id,
    post_bodies,
    read_protobuf_bodies,
    stored_events,
    write_jsonl,
    write_langfuse,
    write_otlp_json,
    write_otlp_protobuf,
)

ROOT = Path(__file__).parent.parent
EXPERIMENT = "support-bot"
VARIANTS = ("direct", "mlflow", "otlp", "traces", "langfuse")
MLFLOW_WRITER = (sys.executable, "-m", "benchmarks.import_data", "mlflow")
COMPARED_AS_KEY = ("event_id",)  # each source has its own key for the same feedback: not a loss


def _flywheel(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run([str(BIN / "flywheel"), *args, "--json"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"flywheel {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def _home(work: Path, variant: str, world: Path, endpoint: str) -> tuple[Path, dict[str, str]]:
    """A fresh home configured as the demo's: its own MLflow, the world's golden set and knowledge
    (a copy: the demo corrects the source behind the index's back), the simulator as endpoint."""
    home = work / variant
    knowledge = home / "knowledge"
    shutil.copytree(world / "knowledge", knowledge)
    env = child_env(
        home,
        FLYWHEEL_GOLDEN=str(world / "golden.jsonl"),
        FLYWHEEL_KNOWLEDGE_SOURCE=str(knowledge),
        OPENAI_BASE_URL=endpoint,
        MLFLOW_TRACKING_URI=f"sqlite:///{home.resolve()}/mlflow.db",
    )
    _flywheel(env, "prompt", "set", str(world / "prompt.txt"))
    _flywheel(env, "kb", "sync")
    for doc in (world / "knowledge_updates").iterdir():
        shutil.copy(doc, knowledge / doc.name)
    return home, env


def _store(home: Path) -> dict[str, dict[str, Any]]:
    return {e.event_id: asdict(e) for e in stored_events(home)}


def _feed(variant: str, home: Path, env: dict[str, str], world: Path, carried: Path, work: Path) -> dict[str, Any]:
    """Bring the feedback in through ``variant``; the counts its report (or the service) gives."""
    if variant == "direct":
        out = _flywheel(env, "ingest", str(world / "feedback.jsonl"))
        return out | {"read": out["accepted"] + out["duplicates"] + out["rejected"]}
    if variant == "mlflow":
        subprocess.run(
            [*MLFLOW_WRITER, env["MLFLOW_TRACKING_URI"], EXPERIMENT, "--events", str(carried)],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        return _flywheel(env, "import", "mlflow", "--experiment", EXPERIMENT)
    if variant == "otlp":
        path = work / "otlp.jsonl"
        write_otlp_json(path, jsonl(carried))
        return _flywheel(env, "import", "otlp", str(path))
    if variant == "traces":
        bodies = work / "otlp.bin"
        write_otlp_protobuf(bodies, jsonl(carried))
        server = Server(home)
        server.env = env
        key = server.cli("keys", "create", "collector", "--scope", "ingest")["key"]
        url = server.start(workers=1)
        try:
            rejected = post_bodies(url, key, read_protobuf_bodies(bodies), threads=2).rejected_spans
        finally:
            server.stop()
        sent = sum(1 for _ in jsonl(carried))
        accepted = len(_store(home))
        return {"read": sent, "accepted": accepted, "rejected": rejected, "duplicates": sent - accepted - rejected}
    folder = work / "langfuse"
    write_langfuse(folder, jsonl(carried))
    with LangfuseServer(folder) as api:
        return _flywheel(env | api.env, "import", "langfuse")


def _compare(direct: dict[str, Any] | None, imported: dict[str, Any] | None, tally: dict[str, Counter]) -> None:
    """Count, field by field, what the imported event lost (``dropped``), changed or added against the
    directly ingested one; a metadata key counts as its own field."""
    if direct is None or imported is None:
        tally["events"]["missing" if imported is None else "only_imported"] += 1
        return
    tally["events"]["matched"] += 1
    fields = {k: v for k, v in direct.items() if k not in COMPARED_AS_KEY and k != "metadata"}
    fields |= {f"metadata.{k}": v for k, v in direct["metadata"].items()}
    theirs = {k: v for k, v in imported.items() if k not in COMPARED_AS_KEY and k != "metadata"}
    theirs |= {f"metadata.{k}": v for k, v in imported["metadata"].items()}
    for name in fields.keys() | theirs.keys():
        mine, other = fields.get(name), theirs.get(name)
        if mine == other:
            continue
        if _empty(mine):
            tally["added"][name] += 1
        elif _empty(other):
            tally["dropped"][name] += 1
        else:
            tally["changed"][name] += 1


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _summary(variant: str, counts: dict[str, Any], stored: dict[str, dict[str, Any]], triage: dict, cycle: dict):
    clusters = triage["clusters"]
    candidates = cycle["candidates"]
    no_consent = counts.get("skipped_no_consent")
    if no_consent is None:  # the direct ingest and the service do not count it: the store does
        no_consent = sum(1 for e in stored.values() if not e["consent"])
    return {
        "source": variant,
        "read": counts["read"],
        "accepted": counts["accepted"],
        "duplicates": counts["duplicates"],
        "rejected": counts["rejected"],
        "skipped_no_consent": no_consent,
        "clusters": len(clusters),
        "cluster_categories": dict(Counter(c["category"] for c in clusters).most_common()),
        "negative_in_clusters": sum(c["size"] for c in clusters),
        "candidates": len(candidates),
        "candidate_kinds": dict(Counter(c["kind"] for c in candidates).most_common()),
        "champion_score": cycle.get("champion_score"),
    }


def _table(rows: list[dict[str, Any]], drops: dict[str, dict[str, dict[str, int]]]) -> str:
    cols = ("source", "read", "accepted", "duplicates", "rejected", "skipped_no_consent", "clusters", "candidates")
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    lines.append("")
    for r in rows:
        cats = ", ".join(f"{k} {v}" for k, v in r["cluster_categories"].items())
        kinds = ", ".join(f"{k} {v}" for k, v in r["candidate_kinds"].items()) or "-"
        lines.append(f"{r['source']}: clusters by category: {cats}; candidates: {kinds}")
    lines.append("")
    for variant, tally in drops.items():
        events = tally["events"]
        lines.append(f"{variant}: events matched {events.get('matched', 0)}, missing {events.get('missing', 0)}")
        for kind in ("dropped", "changed", "added"):
            found = ", ".join(f"{k} {v}" for k, v in sorted(tally[kind].items(), key=lambda kv: -kv[1]))
            lines.append(f"  {kind}: {found or '-'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> bool:
    from flywheel.sim.server import Simulator

    parser = argparse.ArgumentParser(prog="python -m benchmarks.import_to_candidate")
    parser.add_argument("--work", type=Path, help="keep the homes here (default: a temporary directory)")
    parser.add_argument("--sources", nargs="+", choices=VARIANTS[1:], default=list(VARIANTS[1:]))
    parser.add_argument("--table", action="store_true", help="only print the table of the last run's JSON")
    args = parser.parse_args(argv)
    if args.table:
        last = json.loads((OUT / "import_to_candidate.json").read_text())
        print(_table(last["sources"], last["mappings"]))
        return True
    work = args.work or Path(tempfile.mkdtemp(prefix="flywheel-import-to-candidate-"))
    work.mkdir(parents=True, exist_ok=True)
    world = work / "world"
    subprocess.run([str(BIN / "flywheel"), "sim", "world", str(world)], check=True, capture_output=True)
    rows: list[dict[str, Any]] = []
    drops: dict[str, dict[str, dict[str, int]]] = {}
    direct_events: dict[str, dict[str, Any]] = {}
    carried = work / "carried.jsonl"
    with Simulator() as sim:
        for variant in ("direct", *args.sources):
            print(f"-- {variant}", file=sys.stderr, flush=True)
            home, env = _home(work, variant, world, sim.base_url)
            counts = _feed(variant, home, env, world, carried, work)
            stored = _store(home)
            if variant == "direct":
                direct_events = stored
                # What the other sources carry: the lines this ingest accepted (malformed ones stay out).
                with carried.open("w", encoding="utf-8") as fh:
                    write_jsonl(fh, (e for e in jsonl_lenient(world / "feedback.jsonl") if e["event_id"] in stored))
            else:
                tally: dict[str, Counter] = {
                    "events": Counter(),
                    "dropped": Counter(),
                    "changed": Counter(),
                    "added": Counter(),
                }
                for original in jsonl(carried):
                    _compare(
                        direct_events.get(original["event_id"]), stored.get(native_event_id(variant, original)), tally
                    )
                drops[variant] = {k: dict(v) for k, v in tally.items()}
            triage = _flywheel(env, "triage")
            cycle = _flywheel(env, "cycle")
            rows.append(_summary(variant, counts, stored, triage, cycle))
            OUT.mkdir(exist_ok=True)  # written as each source finishes: a long run stopped keeps what it did
            (OUT / "import_to_candidate.json").write_text(json.dumps({"sources": rows, "mappings": drops}, indent=2))
    print(_table(rows, drops))
    return all(r["candidates"] > 0 for r in rows)


def jsonl_lenient(path: Path):
    """The lines of a JSONL file that are JSON objects with an event id (the world has malformed ones)."""
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict) and isinstance(value.get("event_id"), str):
                yield value


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
