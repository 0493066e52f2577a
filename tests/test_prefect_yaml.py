"""prefect.yaml names real flows and sane schedules (deploying for real is in the operator tests)."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from prefect.client.schemas.schedules import CronSchedule

ROOT = Path(__file__).resolve().parents[1]


def test_deployments_point_at_the_cycle_flow_with_a_nightly_schedule() -> None:
    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in doc["deployments"]}
    assert {"nightly", "on-demand"} <= set(deployments)
    for d in deployments.values():
        module, _, attr = d["entrypoint"].partition(":")
        flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), attr)
        assert flow.name == "improvement-cycle"
        assert d["work_pool"]["name"] == "flywheel-process" and d["concurrency_limit"] == 1
        flow.validate_parameters(d.get("parameters") or {})
    (schedule,) = deployments["nightly"]["schedules"]
    assert CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"]).cron == "0 2 * * *"


def test_task_cache_keys_are_short_and_path_safe() -> None:
    from flows.cycle import _key

    key = _key("/tmp/some/home", "cyc-20261125T000000-abcd", "eval", ",".join("f" * 64 for _ in range(20)))
    assert len(key) <= 64 and key.replace("-", "").isalnum()  # Prefect names a result file after it
    assert key != _key("/tmp/some/home", "cyc-20261125T000000-abcd", "eval", "other")
