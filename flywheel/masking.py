"""Secrets never shown: one place that knows how to hide them.

``flywheel config``, ``flywheel status``, logs and error messages all go through :func:`mask_secrets`
(text that may hold a URL with a password) or :func:`masked_settings` (the settings as a document), so a
new secret setting or a new message cannot forget one of several masking rules. A password in a URL
becomes ``***`` (``postgresql://user:***@host/db``); so do ``password=...`` connection-string pairs,
query parameters named like secrets, and every pydantic ``SecretStr``.

Messages Flywheel writes itself are masked where they are made; :func:`install_log_masking` covers
the rest (SQLAlchemy, MLflow, httpx, Prefect, uvicorn): every log record made in the process after it
is installed carries a masked message and traceback. The faces install it (the CLI, the service, the
flows package), so importing the library changes nothing global.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, SecretStr

MASK = "***"

# scheme://user:password@host: the password is everything between the first ':' after '//' and the last
# '@' before the host (a password may itself hold '@' or ':'). Whitespace and quotes end a URL.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:)(?P<password>[^\s'\"/]*)(?=@[^\s@'\"]*)")
# key=value pairs (libpq connection strings, query strings) whose key says it holds a secret.
_SECRET_PAIR = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|token|sslpassword)\s*=\s*)"
    r"(?P<value>'[^']*'|\"[^\"]*\"|[^\s&;,'\"]+)",
    re.IGNORECASE,
)


def mask_secrets(text: str) -> str:
    """``text`` with URL passwords and secret ``key=value`` pairs replaced by ``***``."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK if m["password"] else m[0], text)
    return _SECRET_PAIR.sub(lambda m: m["key"] + MASK, text)


def masked_value(value: Any) -> Any:
    """A setting's value fit to show: secrets as ``***``, strings masked, containers walked."""
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else None
    if isinstance(value, BaseModel):
        return masked_model(value)
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):
        return {k: masked_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked_value(v) for v in value]
    return value


def masked_model(model: BaseModel) -> dict[str, Any]:
    """A settings model as a JSON document with every secret masked (``SecretStr`` fields, URL passwords)."""
    dumped = model.model_dump(mode="json")
    out: dict[str, Any] = {}
    for name, value in dumped.items():
        raw = getattr(model, name, None)
        out[name] = masked_value(raw) if isinstance(raw, SecretStr | BaseModel) else masked_value(value)
    return out


_RecordFactory = Callable[..., logging.LogRecord]


def install_log_masking() -> None:
    """From now on every log record made in this process is masked (idempotent).

    A record factory, not a handler filter: it sees records of every logger, including those that
    Prefect or uvicorn give their own handlers later, and it runs only for records a logger will
    emit (a disabled level never makes a record)."""
    factory: _RecordFactory = logging.getLogRecordFactory()
    if getattr(factory, "masks_secrets", False):
        return

    def masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        _mask_record(record)
        return record

    masked_record.masks_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(masked_record)


def _mask_record(record: logging.LogRecord) -> None:
    """The record's message and traceback with secrets masked; untouched (lazy args kept) when clean."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging reports it itself when it formats the record
        return
    masked = mask_secrets(message)
    if masked != message:
        record.msg, record.args = masked, ()
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        # Formatters reuse exc_text when set, so the traceback they print is the masked one.
        record.exc_text = mask_secrets(logging.Formatter().formatException(record.exc_info))
