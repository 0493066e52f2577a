"""Prefect logs every exception a task or flow raises with its traceback. For Flywheel's own
errors (an endpoint outage, a bad golden set: ``FlywheelError``) the message already says what
happened and what to do; a traceback of engine frames only buries it, on the terminal and in the
Prefect UI. Unexpected exceptions keep their tracebacks."""

from __future__ import annotations

import logging

from flywheel.errors import FlywheelError

_ENGINE_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class DropTracebackOfExpectedErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], FlywheelError):
            record.exc_info, record.exc_text = None, None
        return True


def install() -> None:
    """Idempotent: one filter per engine logger."""
    for name in _ENGINE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropTracebackOfExpectedErrors) for f in logger.filters):
            logger.addFilter(DropTracebackOfExpectedErrors())
