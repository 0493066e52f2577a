"""API keys for ``flywheel serve``: scoped, stored only as salted scrypt hashes, revocable at once.

A key reads ``fw_<id>_<secret>``: the id finds its record without trying every hash, and only that
one record's hash is computed. Records live in the state store's ``api_keys`` table (behind the
store URL: ``state.sqlite`` under the home on one host, PostgreSQL for several), so every replica
and the CLI see the same keys. A server reads the key id's row on every request (one primary-key
read), so a revocation from the CLI on any host is refused by every replica from its next request on.

scrypt is slow on purpose (~50 ms); a server keeps, per key id, a SHA-256 of the key that passed
it for ``VERIFIED_TTL_SECONDS`` after its last use, so a key in use costs one hash a request. Each id
has one key, so while that memo lives any other secret for the id is refused by the same comparison:
a wrong secret costs what a right one does, and what an unknown id does (no scrypt to time). The
memo never outlives the record: the record (revoked or not) is read from the table on every request,
and a revoked one drops its memo.

A key table that cannot be read, or a home's old ``keys.json`` that is not a key file, makes the
server refuse every key (``KeyFileError``, 503) until it is fixed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from flywheel.errors import FlywheelError, UsageError
from flywheel.state.keys import KeyRow, KeyRows
from flywheel.state.store import default_state_url

if TYPE_CHECKING:
    from flywheel.config import Settings

log = logging.getLogger("flywheel.keys")

PREFIX = "fw"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MAX_KEY_CHARS = 200
# scrypt cost: 16 MB and ~50 ms per hash on one core (RFC 7914's interactive setting).
_N, _R, _P = 2**14, 8, 1
VERIFIED_TTL_SECONDS = 30.0
_T = TypeVar("_T")


LEGACY_FILE = "keys.json"  # where a home kept its keys before the state store did
IMPORTED_SUFFIX = ".imported"


class KeyFileError(UsageError):
    """No key can be checked: the key table cannot be read, or a ``keys.json`` waiting to be
    imported is not a key file (bad JSON, wrong shape)."""


class Scope(StrEnum):
    ingest = "ingest"  # POST /v1/feedback
    read = "read"  # GET /v1/champion, POST /v1/ask, /metrics
    admin = "admin"  # everything


class KeyRecord(BaseModel):
    """One key as stored: never the key itself."""

    id: str
    name: str
    scope: Scope
    salt: str
    hash: str
    created: datetime
    revoked: datetime | None = None

    def allows(self, scopes: tuple[Scope, ...]) -> bool:
        return self.scope is Scope.admin or self.scope in scopes

    @classmethod
    def from_row(cls, row: KeyRow) -> KeyRecord:
        return cls(
            id=row.key_id,
            name=row.name,
            scope=Scope(row.scope),
            salt=row.salt,
            hash=row.hash,
            created=_when(row.created_at),
            revoked=_when(row.revoked_at) if row.revoked_at else None,
        )

    def to_row(self) -> KeyRow:
        return KeyRow(
            key_id=self.id,
            name=self.name,
            scope=self.scope.value,
            salt=self.salt,
            hash=self.hash,
            created_at=self.created.timestamp(),
            revoked_at=self.revoked.timestamp() if self.revoked else None,
        )


def _when(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


class KeyInfo(BaseModel):
    """What `keys list` shows: no hash, no salt."""

    name: str
    scope: Scope
    id: str
    created: datetime
    revoked: datetime | None = None


def _hash(key: str, salt: bytes) -> bytes:
    return hashlib.scrypt(key.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)


def key_id(presented: str) -> str | None:
    """The id part of a well-formed key, else None."""
    parts = presented.split("_", 2)
    if len(presented) > _MAX_KEY_CHARS or len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


class KeyStore:
    """The keys: create, list, revoke (the CLI) and verify (the server), on the ``api_keys`` table of
    the state store at ``url`` (opened on first use); ``legacy`` is a home's old ``keys.json``."""

    def __init__(self, url: str, legacy: Path | None = None, lock_timeout: float | None = None) -> None:
        self.url = url
        self.legacy = legacy
        self._lock_timeout = lock_timeout
        self._lock = threading.Lock()
        self._rows: KeyRows | None = None
        self._passed: dict[str, _Passed] = {}  # id -> the key that passed scrypt there, while in use
        self._legacy_stamp: tuple[int, int, int] | None = None
        self._broken: KeyFileError | None = None
        self._unreadable = False

    # the CLI ---------------------------------------------------------------------------------
    def create(self, name: str, scope: Scope | str) -> str:
        """A new key; returned once, stored as a salted hash. Names are unique among active keys."""
        if not _NAME.match(name):
            raise UsageError(
                f"key name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        try:
            scope = Scope(scope)
        except ValueError:
            raise UsageError(f"--scope must be one of {', '.join(Scope)}, not {scope!r}") from None
        new_id = secrets.token_hex(6)
        key = f"{PREFIX}_{new_id}_{secrets.token_urlsafe(32)}"
        salt = secrets.token_bytes(16)
        record = KeyRecord(
            id=new_id, name=name, scope=scope, salt=salt.hex(), hash=_hash(key, salt).hex(), created=datetime.now(UTC)
        )
        if not self._table().add_key(record.to_row()):
            raise UsageError(f"an active key named {name!r} exists; revoke it first or choose another name")
        return key

    def list(self) -> list[KeyInfo]:
        return [KeyInfo(**KeyRecord.from_row(r).model_dump(exclude={"salt", "hash"})) for r in self._table().all_keys()]

    def revoke(self, name: str) -> int:
        """Revoke the active key(s) named ``name``; a usage error when there is none."""
        count = self._table().revoke_keys(name)
        if not count:
            raise UsageError(f"no active key named {name!r} (see `flywheel keys list`)")
        return count

    # the server ------------------------------------------------------------------------------
    def lookup(self, presented: str) -> tuple[KeyRecord | None, bool]:
        """(the active record the key names, whether it passed already). No record: unknown, revoked,
        or a secret other than the one that passed for its id (refused without scrypt). The id's row
        is read on every call: that is what makes a revocation on any host count at once."""
        found = key_id(presented)
        if found is None:
            return None, False
        row = self._read(lambda rows: rows.key(found))
        record = KeyRecord.from_row(row) if row is not None else None
        if record is None or record.revoked is not None:
            self._passed.pop(found, None)
            return None, False
        memo = self._memo(record)
        if memo is None:
            return record, False
        if not hmac.compare_digest(memo.digest, hashlib.sha256(presented.encode()).digest()):
            return None, False
        memo.expires = time.monotonic() + VERIFIED_TTL_SECONDS
        return record, True

    def verify(self, presented: str) -> KeyRecord | None:
        """The active record of a key that matches its hash, else None (unknown, revoked or wrong)."""
        record, passed = self.lookup(presented)
        if record is None or passed:
            return record
        if not hmac.compare_digest(_hash(presented, bytes.fromhex(record.salt)), bytes.fromhex(record.hash)):
            return None
        with self._lock:
            self._passed[record.id] = _Passed(
                record.salt, hashlib.sha256(presented.encode()).digest(), time.monotonic() + VERIFIED_TTL_SECONDS
            )
        return record

    def problem(self) -> str | None:
        """Why no key can be checked now (the key table or a keys.json to import is unreadable), or None."""
        try:
            self._read(lambda rows: rows.readable())
        except KeyFileError as exc:
            return str(exc)
        return None

    def close(self) -> None:
        with self._lock:
            if self._rows is not None:
                self._rows.close()
                self._rows = None

    def _memo(self, record: KeyRecord) -> _Passed | None:
        memo = self._passed.get(record.id)
        if memo is None or memo.salt != record.salt or memo.expires < time.monotonic():
            return None
        return memo

    # the table -------------------------------------------------------------------------------
    def _table(self) -> KeyRows:
        """The table, opened (and migrated) on first use, with any old keys.json imported first."""
        with self._lock:
            if self._rows is None:
                kwargs = {} if self._lock_timeout is None else {"lock_timeout": self._lock_timeout}
                self._rows = KeyRows(self.url, **kwargs)
            rows = self._rows
        self._import_legacy(rows)
        return rows

    def _read(self, query: Callable[[KeyRows], _T]) -> _T:
        """A server's read: any failure to reach the table is a ``KeyFileError`` (503), logged when
        it starts and when it ends, not at every request."""
        try:
            result = query(self._table())
        except KeyFileError:
            raise
        except FlywheelError as exc:
            if not self._unreadable:
                log.error("every API key is refused (503) until the key table can be read: %s", exc)
            self._unreadable = True
            raise KeyFileError(f"the key table cannot be read: {exc}") from None
        if self._unreadable:
            log.warning("the key table is readable again: keys are checked as before")
            self._unreadable = False
        return result

    def _import_legacy(self, rows: KeyRows) -> None:
        """A home's ``keys.json`` from before the state store held keys: imported by id (a record
        already there wins), then renamed ``keys.json.imported``. Costs one ``stat`` once done."""
        if self.legacy is None:
            return
        try:
            st = os.stat(self.legacy)
        except FileNotFoundError:
            self._broken = None
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp == self._legacy_stamp and self._broken is not None:
                raise self._broken
            self._legacy_stamp = stamp
            try:
                records = _read_file(self.legacy)
            except KeyFileError as exc:
                self._broken = exc
                log.error("every API key is refused (503) until the key file is fixed or removed: %s", exc)
                raise
            if self._broken is not None:
                log.warning("the key file is readable again: keys are checked as before")
                self._broken = None
            added = rows.import_keys([r.to_row() for r in records])
            done = self.legacy.with_name(self.legacy.name + IMPORTED_SUFFIX)
            try:
                os.replace(self.legacy, done)
            except FileNotFoundError:  # another process imported it at the same moment
                return
            log.warning(
                "imported %d of %d API key(s) from %s into the state store (%s); the file is now %s "
                "and is no longer read",
                added,
                len(records),
                self.legacy,
                rows.where,
                done.name,
            )


def _read_file(path: Path) -> list[KeyRecord]:
    """The records of an old ``keys.json``."""
    try:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return [KeyRecord.model_validate(r) for r in doc.get("keys", [])]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        reason = f"{exc.error_count()} invalid field(s)" if isinstance(exc, ValidationError) else str(exc)
        raise KeyFileError(f"{path.name} cannot be read as the key file: {reason}") from None


@dataclass(slots=True)
class _Passed:
    """The SHA-256 of the key that passed scrypt for an id (with that record's salt), until ``expires``."""

    salt: str
    digest: bytes
    expires: float


def open_keys(where: Settings | Path, lock_timeout: float | None = None) -> KeyStore:
    """The keys of the settings' state store (``Settings.resolved_state_url``), or, given a home
    directory, of ``state.sqlite`` under it; either way the home's old ``keys.json`` is imported."""
    if isinstance(where, Path):
        return KeyStore(default_state_url(where), where / LEGACY_FILE, lock_timeout)
    where.ensure_home()
    return KeyStore(where.resolved_state_url, where.home / LEGACY_FILE, lock_timeout)
