"""A new state directory's MLflow SQLite database, copied from an empty one already migrated.

MLflow builds a new SQLite tracking database by running every one of its Alembic migrations (over a
hundred): about 3 s of CPU on a 2-core machine, paid by every new ``FLYWHEEL_HOME`` (a demo, a
``flywheel init``, each test). The result is the same empty schema every time for one MLflow
version, so the first one built is kept in the user's cache (``$FLYWHEEL_CACHE_DIR``, else
``$XDG_CACHE_HOME/flywheel``, else ``~/.cache/flywheel``), named by MLflow's version, and later
homes start from a copy (milliseconds). MLflow still checks the copy's schema version when it opens
it, so a stale or foreign template is refused by MLflow itself, and any failure here only means
MLflow builds the database the slow way.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where Flywheel keeps what any state directory can reuse (never anything of one home's)."""
    named = os.environ.get("FLYWHEEL_CACHE_DIR")
    if named:
        return Path(named)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flywheel"


def seed_tracking_db(db: Path, artifact_root: Path) -> bool:
    """Create ``db`` from the migrated template when it does not exist yet; whether it was seeded.
    MLflow's own ``Default`` experiment gets ``artifact_root`` (MLflow would have used the current
    directory's ``./mlruns``)."""
    if db.exists():
        return False
    partial = db.with_name(f".{db.name}.{os.getpid()}.partial")
    try:
        template = _template()
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, partial)
        try:
            with sqlite3.connect(partial) as conn:
                conn.execute(
                    "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                    ((artifact_root / "0").as_uri(),),
                )
            conn.close()
        except sqlite3.Error:
            template.unlink(missing_ok=True)  # not a tracking database: the next home builds a new one
            raise
        if db.exists():  # another process made it meanwhile: theirs stands
            return False
        os.replace(partial, db)
        return True
    except (OSError, sqlite3.Error, ImportError) as exc:
        log.debug("MLflow database %s built by MLflow itself (no template: %s)", db, exc)
        return False
    finally:
        partial.unlink(missing_ok=True)


def _template() -> Path:
    """The cached empty, migrated tracking database of the installed MLflow; built on first use."""
    import mlflow

    target = cache_dir() / f"mlflow-{mlflow.__version__}-empty.db"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        fresh = Path(scratch) / "mlflow.db"
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{fresh}").search_experiments()  # runs the migrations
        copy = Path(scratch) / "template.db"
        with sqlite3.connect(fresh) as source, sqlite3.connect(copy) as dest:
            source.backup(dest)  # consistent even while MLflow's engine still holds the file open
        source.close()
        dest.close()
        os.replace(copy, target)  # atomic: a parallel builder's copy is as good as ours
    return target
