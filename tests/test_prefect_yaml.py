"""prefect.yaml names real flows and sane schedules (deploying for real is in the operator tests)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule

ROOT = Path(__file__).resolve().parents[1]


def _module(path: str) -> str:
    """The import name of an entrypoint's file: ``flows/cycle.py`` is ``flywheel.flows.cycle`` installed."""
    return "flywheel." + path.removesuffix(".py").replace("/", ".")


def test_every_schedule_is_deployed_paused() -> None:
    """Deploying switches nothing on: an operator resumes each schedule (README, "A Prefect server")."""
    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    schedules = [(d["name"], s) for d in doc["deployments"] for s in d.get("schedules") or []]
    assert {name for name, _ in schedules} == {"nightly", "watch", "weekly-review"}
    assert [name for name, s in schedules if s.get("active") is not False] == []


def test_deployments_point_at_the_cycle_flow_with_a_nightly_schedule() -> None:
    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in doc["deployments"]}
    # Named, not found by entrypoint: a cycle deployment repointed elsewhere must fail here, not be skipped.
    for name in ("nightly", "on-demand", "on-feedback"):
        d = deployments[name]
        assert d["entrypoint"] == "flows/cycle.py:improvement_cycle", name
        module, _, attr = d["entrypoint"].partition(":")
        flow = getattr(importlib.import_module(_module(module)), attr)
        assert flow.name == "improvement-cycle"
        assert d["work_pool"]["name"] == "flywheel-process"
        # No deployment concurrency limit on a flow that pauses for a person: Prefect frees the slot when
        # the run pauses and the run's next lease renewal (410) crashes it. The `cycles` queue (limit one)
        # and the state directory's cycle lock keep cycles from overlapping instead.
        assert "concurrency_limit" not in d, name
        assert d["work_pool"]["work_queue_name"] == "cycles"
        flow.validate_parameters(d.get("parameters") or {})
    (schedule,) = deployments["nightly"]["schedules"]
    assert CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"]).cron == "0 2 * * *"


def test_the_nightly_can_run_with_no_person_in_the_loop() -> None:
    """Its parameter takes "canary" (winners start as canaries for the watch; the run never waits),
    and its description says how; a value that is not one of the three is refused, not read as true."""
    from prefect.exceptions import ParameterTypeError

    from flywheel.flows.cycle import CycleParameters, improvement_cycle

    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    nightly = next(d for d in doc["deployments"] if d["name"] == "nightly")
    assert 'auto_approve "canary"' in nightly["description"] and "never waits" in nightly["description"]
    params = nightly["parameters"]["params"]
    assert params["auto_approve"] is False  # a person decides unless the config or an operator says otherwise
    canary = improvement_cycle.validate_parameters({"params": {**params, "auto_approve": "canary"}})["params"]
    assert CycleParameters.model_validate(canary).auto_approve == "canary"
    with pytest.raises(ParameterTypeError, match="canary"):
        improvement_cycle.validate_parameters({"params": {**params, "auto_approve": "yes"}})


def test_the_weekly_review_deployment_runs_every_monday() -> None:
    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    review = next(d for d in doc["deployments"] if d["name"] == "weekly-review")
    module, _, attr = review["entrypoint"].partition(":")
    flow = getattr(importlib.import_module(_module(module)), attr)
    assert flow.name == "weekly-feedback-review"
    flow.validate_parameters(review["parameters"])
    (schedule,) = review["schedules"]
    assert CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"]).cron == "0 9 * * 1"


def test_task_cache_keys_are_short_and_path_safe() -> None:
    from flywheel.flows.cycle import _key

    key = _key("/tmp/some/home", "cyc-20261125T000000-abcd", "eval", ",".join("f" * 64 for _ in range(20)))
    assert len(key) <= 64 and key.replace("-", "").isalnum()  # Prefect names a result file after it
    assert key != _key("/tmp/some/home", "cyc-20261125T000000-abcd", "eval", "other")


def test_fresh_negative_feedback_triggers_a_cycle() -> None:
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from flywheel.config import EventSettings
    from flywheel.flows.events import EVENT

    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployment = next(d for d in doc["deployments"] if d["name"] == "on-feedback")
    assert deployment["entrypoint"] == "flows/cycle.py:improvement_cycle" and "concurrency_limit" not in deployment
    (raw,) = deployment["triggers"]
    trigger = DeploymentEventTrigger.model_validate({k: v for k, v in raw.items() if k != "type"})
    assert trigger.expect == {EVENT} and trigger.threshold == 10
    assert trigger.within.total_seconds() == 6 * 3600 and trigger.posture == "Reactive"
    assert trigger.match.model_dump()["prefect.resource.id"] == EventSettings().resource


def test_the_operators_flows_are_deployed_on_the_cycles_queue() -> None:
    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in doc["deployments"]}
    for name, flow_name in (("triage", "triage-feedback"), ("promotion", "promotion")):
        d = deployments[name]
        module, _, attr = d["entrypoint"].partition(":")
        flow = getattr(importlib.import_module(_module(module)), attr)
        assert flow.name == flow_name and "schedules" not in d  # run by hand
        assert d["work_pool"] == {"name": "flywheel-process", "work_queue_name": "cycles"}


def test_the_golden_review_deployment_runs_the_review_flow_by_hand() -> None:
    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    d = next(d for d in doc["deployments"] if d["name"] == "golden-review")
    module, _, attr = d["entrypoint"].partition(":")
    flow = getattr(importlib.import_module(_module(module)), attr)
    assert flow.name == "golden-review" and "schedules" not in d  # a person reviews when they choose
    assert d["work_pool"]["name"] == "flywheel-process"
    flow.validate_parameters(d["parameters"])


def test_the_watch_runs_every_15_minutes_and_a_drift_alarm_starts_a_cycle() -> None:
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from flywheel.flows.events import DRIFT_EVENT, DRIFT_RESOURCE

    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in doc["deployments"]}
    watch = deployments["watch"]
    module, _, attr = watch["entrypoint"].partition(":")
    flow = getattr(importlib.import_module(_module(module)), attr)
    assert flow.name == "watch" and watch["concurrency_limit"] == 1
    flow.validate_parameters(watch["parameters"])
    (schedule,) = watch["schedules"]
    assert CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"]).cron == "*/15 * * * *"
    drift = deployments["on-drift"]
    assert drift["entrypoint"] == "flows/cycle.py:improvement_cycle" and "concurrency_limit" not in drift
    assert drift["work_pool"]["work_queue_name"] == "cycles"
    (raw,) = drift["triggers"]
    trigger = DeploymentEventTrigger.model_validate({k: v for k, v in raw.items() if k != "type"})
    assert trigger.expect == {DRIFT_EVENT} and trigger.threshold == 1 and trigger.posture == "Reactive"
    assert trigger.match.model_dump()["prefect.resource.id"] == DRIFT_RESOURCE
