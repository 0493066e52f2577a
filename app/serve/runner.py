"""Serving the app: the listening socket bound here (so the URL is known, also for port 0, and a
busy port is a one-line usage error), then one uvicorn server or a supervisor of N workers that
share the socket. Metrics of all workers meet in a per-run ``PROMETHEUS_MULTIPROC_DIR``; the
directories of runs that died without removing theirs (SIGKILL, a crash) are removed at start.
The access log names the path only: query strings carry user ids (``?user_id=``)."""

from __future__ import annotations

import copy
import logging
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

from flywheel.config import Settings
from flywheel.errors import UsageError

APP = "flywheel.app.serve.main:create_app"


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


_HOST_FILE = "host"  # which machine's run a metrics directory is (FLYWHEEL_HOME may be shared storage)


def metrics_dir(settings: Settings) -> Path:
    """Set ``PROMETHEUS_MULTIPROC_DIR`` for this run (before prometheus_client makes any metric)."""
    root = settings.home.resolve() / "metrics"
    remove_stale_metrics(root)
    directory = root / str(os.getpid())
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o700)
    (directory / _HOST_FILE).write_text(socket.gethostname(), encoding="utf-8")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # in case prometheus_client was imported already
    return directory


def remove_stale_metrics(root: Path) -> list[Path]:
    """Remove ``root/<pid>/`` of this host's runs whose process is gone; what was removed."""
    removed = []
    for directory in root.glob("*"):
        if directory.name.isdigit() and _ours(directory) and not _alive(int(directory.name)):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


def _ours(directory: Path) -> bool:
    """A run of this host (or of a version that did not record its host): another host's may be alive."""
    try:
        return (directory / _HOST_FILE).read_text(encoding="utf-8") == socket.gethostname()
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class PathOnly(logging.Filter):
    """Drops the query string from uvicorn's access log line (``%s - "%s %s HTTP/%s" %d``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], args[2].split("?", 1)[0], *args[3:])
        return True


def log_config() -> dict:
    """uvicorn's logging, all on stderr (stdout carries only the URL or the --json document), and
    Flywheel's own service logger beside it."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config.setdefault("filters", {})["path_only"] = {"()": PathOnly}
    config["handlers"]["access"]["filters"] = ["path_only"]
    config["loggers"]["flywheel"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def run(
    settings: Settings, host: str, port: int, workers: int, access_log: bool, announce: Callable[[str], None]
) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM: in-flight requests finish first)."""
    import uvicorn

    sock = bind(host, port)
    directory = metrics_dir(settings)
    config = uvicorn.Config(
        APP,
        factory=True,
        workers=workers,
        access_log=access_log,
        log_level="info",
        log_config=log_config(),
        timeout_graceful_shutdown=10,
    )
    announce(base_url(sock))
    try:
        if workers > 1:
            from uvicorn.supervisors import Multiprocess

            Multiprocess(config, sockets=[sock]).run()
        else:
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)
