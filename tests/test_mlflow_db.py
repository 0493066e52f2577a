"""A new home's MLflow database starts from the cached, migrated template (flywheel/mlflow_db.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import mlflow
import pytest

from flywheel.config import Settings
from flywheel.mlflow_db import cache_dir, seed_tracking_db
from flywheel.registry import use_mlflow


def _schema(db: Path) -> tuple[str, list[str]]:
    with sqlite3.connect(db) as conn:
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    return version, tables


def test_a_seeded_home_has_mlflows_own_schema_and_works(settings: Settings, tmp_path: Path) -> None:
    built = tmp_path / "built" / "mlflow.db"  # what MLflow itself makes of a new file
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{built}").search_experiments()
    client = use_mlflow(settings)  # the home's database: a copy of the template
    db = settings.home / "mlflow.db"
    assert (cache_dir() / f"mlflow-{mlflow.__version__}-empty.db").exists()
    assert _schema(db) == _schema(built)
    run = client.create_run(client.get_experiment_by_name(settings.experiment).experiment_id)
    client.log_metric(run.info.run_id, "golden_score", 0.5)
    assert client.get_run(run.info.run_id).data.metrics == {"golden_score": 0.5}
    default = client.get_experiment("0")
    assert default.artifact_location == (settings.home.resolve() / "mlartifacts" / "0").as_uri()


def test_an_existing_database_is_never_replaced(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"theirs")
    assert seed_tracking_db(db, tmp_path / "art") is False
    assert db.read_bytes() == b"theirs"


def test_a_broken_template_is_dropped_and_mlflow_builds_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_CACHE_DIR", str(tmp_path / "cache"))
    template = cache_dir() / f"mlflow-{mlflow.__version__}-empty.db"
    template.parent.mkdir(parents=True)
    template.write_bytes(b"not a database" * 100)
    db = tmp_path / "home2" / "mlflow.db"
    assert seed_tracking_db(db, tmp_path / "art") is False
    assert not db.exists() and not template.exists()
    assert list(db.parent.iterdir()) == []  # no partial copy left behind
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
    assert [e.name for e in client.search_experiments()] == ["Default"]


def test_use_mlflow_points_mlflow_again_whenever_the_store_or_experiment_changed(
    settings: Settings, tmp_path: Path
) -> None:
    """use_mlflow sets MLflow up once per store and experiment in a process; another home, another
    experiment, or other code pointing MLflow elsewhere in between: the next call points it back, and
    a run lands where the settings say."""

    def run_lands_in(s: Settings) -> None:
        client = use_mlflow(s)
        with mlflow.start_run() as run:
            pass
        assert mlflow.get_tracking_uri() == s.resolved_tracking_uri
        assert run.info.experiment_id == client.get_experiment_by_name(s.experiment).experiment_id
        assert client.get_run(run.info.run_id).info.run_id == run.info.run_id  # in this store

    other_home = settings.model_copy(update={"home": tmp_path / "other-home"})
    other_experiment = settings.model_copy(update={"experiment": "flywheel-other"})
    run_lands_in(settings)
    run_lands_in(settings)  # the second call only makes a client
    run_lands_in(other_home)
    run_lands_in(settings)
    run_lands_in(other_experiment)
    run_lands_in(settings)
    mlflow.set_experiment("someone-elses")  # other code in the process points MLflow elsewhere
    run_lands_in(settings)
    mlflow.set_tracking_uri(other_home.resolved_tracking_uri)
    run_lands_in(settings)
