"""An event as the row the store writes, checked so that every dialect keeps or refuses the same events.

SQLite keeps a NUL character, a NaN or a time it cannot convert where PostgreSQL refuses them: the
checks here refuse them on both, before anything is written. What a database still refuses (a value a
stricter column or a trigger rejects) is reduced by :func:`database_refusal` to a message that names
the rule and, when the database says it, the column, never the value: values may hold PII.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import exc as sa_exc

from flywheel.schemas import NUL, NUL_RULE, TS_RANGE_RULE

# SQLSTATE classes a database refuses one row's values with (PostgreSQL's codes; SQLite has none).
_SQLSTATE_RULES = {
    "22001": "a text is longer than its column allows",
    "22003": "a number is out of its column's range",
    "22007": "a time is not valid for its column",
    "22008": "a time is out of its column's range",
    "22021": "a text holds a character the store cannot keep",
    "22P05": "a text holds a character the store cannot keep",
    "23502": "a required value is missing",
    "23514": "a value breaks a check of the store",
}
ROW_ERRORS = (sa_exc.DataError, sa_exc.IntegrityError)  # failures tied to the values of one row


class Unstorable(ValueError):
    """One event the store cannot keep as a row; the message names the field and the rule, not the value."""


def utc(ts: datetime) -> datetime:
    """``ts`` in UTC, or :class:`Unstorable` when its UTC reading leaves the years 1..9999."""
    try:
        return ts.astimezone(UTC)
    except OverflowError:
        raise Unstorable(f"ts: {TS_RANGE_RULE}") from None


def as_json(name: str, value: Any, ascii_only: bool = False) -> str | None:
    """A list or object column as JSON text (None when empty), or :class:`Unstorable` naming the field."""
    if not value:
        return None
    try:
        return json.dumps(value, ensure_ascii=ascii_only)
    except (ValueError, TypeError, RecursionError) as exc:
        raise Unstorable(f"{name}: cannot be written as JSON ({type(exc).__name__})") from None


def check_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` unchanged, or :class:`Unstorable` for a NUL or a lone surrogate in a text, or a number
    that is not finite (SQLite keeps a NaN as NULL, PostgreSQL as NaN)."""
    for column, value in row.items():
        if isinstance(value, str):
            if NUL in value or not value.isascii():  # ASCII text without NUL (the usual) is fine as it is
                _check_text(column, value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise Unstorable(f"{column}: not a finite number")
    return row


def _check_text(column: str, value: str) -> None:
    if NUL in value:
        raise Unstorable(f"{column}: {NUL_RULE}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Unstorable(f"{column}: holds a lone surrogate, which is not text either store can keep") from None


def database_refusal(exc: sa_exc.DBAPIError) -> str:
    """Why the database refused one row, without the driver's text (it may quote the row's values)."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or ""
    rule = _SQLSTATE_RULES.get(sqlstate) or _SQLSTATE_RULES.get(sqlstate[:2] + "000", "")
    code = sqlstate or getattr(orig, "sqlite_errorname", None) or type(orig).__name__
    column = getattr(getattr(orig, "diag", None), "column_name", None)
    text = f"refused by the store: {rule} ({code})" if rule else f"refused by the store ({code})"
    return f"{column}: {text}" if column else text
