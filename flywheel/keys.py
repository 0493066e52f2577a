"""API keys for ``flywheel serve``: scoped, stored only as salted scrypt hashes, revocable at once.

A key reads ``fw_<id>_<secret>``: the id finds its record without trying every hash, and only that
one record's hash is computed. Records live in ``$FLYWHEEL_HOME/keys.json`` (mode 0600), rewritten
atomically under a file lock; a server re-reads it whenever the file changed (one ``stat`` a
request), so a revocation from the CLI is refused by every worker from the next request on.

scrypt is slow on purpose (~50 ms); a server keeps, per key id, a SHA-256 of the key that passed
it for ``VERIFIED_TTL_SECONDS`` after its last use, so a key in use costs one hash a request. Each id
has one key, so while that memo lives any other secret for the id is refused by the same comparison:
a wrong secret costs what a right one does, and what an unknown id does (no scrypt to time). The
memo never outlives the record: the record (revoked or not) is read from the current file on every
request, and a reload drops the memos of ids no longer active.

A key file that cannot be read makes the server refuse every key (``KeyFileError``, 503) until it is
fixed; it is parsed once per change, not once per request.
"""

from __future__ import annotations

import builtins  # `KeyStore.list` shadows the type in the class body
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from flywheel.errors import UsageError

log = logging.getLogger("flywheel.keys")

PREFIX = "fw"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MAX_KEY_CHARS = 200
# scrypt cost: 16 MB and ~50 ms per hash on one core (RFC 7914's interactive setting).
_N, _R, _P = 2**14, 8, 1
VERIFIED_TTL_SECONDS = 30.0


class KeyFileError(UsageError):
    """The key file exists but is not a key file (bad JSON, wrong shape): no key can be checked."""


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
    """The key file: create, list, revoke (the CLI) and verify (the server)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._records: dict[str, KeyRecord] = {}
        self._passed: dict[str, _Passed] = {}  # id -> the key that passed scrypt there, while in use
        self._broken: KeyFileError | None = None

    # the CLI ---------------------------------------------------------------------------------
    def create(self, name: str, scope: Scope | str) -> str:
        """A new key; returned once, stored as a salted hash. Names are unique among active keys."""
        if not _NAME.match(name):
            raise UsageError(f"key name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
                             "letter or digit")
        try:
            scope = Scope(scope)
        except ValueError:
            raise UsageError(f"--scope must be one of {', '.join(Scope)}, not {scope!r}") from None
        new_id = secrets.token_hex(6)
        key = f"{PREFIX}_{new_id}_{secrets.token_urlsafe(32)}"
        salt = secrets.token_bytes(16)
        with self._editing() as records:
            if any(r.name == name and r.revoked is None for r in records):
                raise UsageError(f"an active key named {name!r} exists; revoke it first or choose another name")
            records.append(KeyRecord(id=new_id, name=name, scope=scope, salt=salt.hex(), hash=_hash(key, salt).hex(),
                                     created=datetime.now(timezone.utc)))
        return key

    def list(self) -> list[KeyInfo]:
        return [KeyInfo(**r.model_dump(exclude={"salt", "hash"})) for r in self._read()]

    def revoke(self, name: str) -> int:
        """Revoke the active key(s) named ``name``; a usage error when there is none."""
        now = datetime.now(timezone.utc)
        with self._editing() as records:
            hits = [r for r in records if r.name == name and r.revoked is None]
            if not hits:
                raise UsageError(f"no active key named {name!r} (see `flywheel keys list`)")
            for r in hits:
                r.revoked = now
        return len(hits)

    # the server ------------------------------------------------------------------------------
    def lookup(self, presented: str) -> tuple[KeyRecord | None, bool]:
        """(the active record the key names, whether it passed already). No record: unknown, revoked,
        or a secret other than the one that passed for its id (refused without scrypt)."""
        found = key_id(presented)
        record = self._current().get(found) if found else None
        if record is None or record.revoked is not None:
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
            self._passed[record.id] = _Passed(record.salt, hashlib.sha256(presented.encode()).digest(),
                                              time.monotonic() + VERIFIED_TTL_SECONDS)
        return record

    def problem(self) -> str | None:
        """Why no key can be checked now (the key file is unreadable), or None."""
        try:
            self._current()
        except KeyFileError as exc:
            return str(exc)
        return None

    def _memo(self, record: KeyRecord) -> _Passed | None:
        memo = self._passed.get(record.id)
        if memo is None or memo.salt != record.salt or memo.expires < time.monotonic():
            return None
        return memo

    def _current(self) -> dict[str, KeyRecord]:
        """The records, re-read when the file was replaced (every write replaces it: a new inode)."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._reload(stamp)
            if self._broken is not None:
                raise self._broken
            return self._records

    def _reload(self, stamp: tuple[int, int, int] | None) -> None:
        """Read the changed file; a broken one is logged once here, not at every request it fails."""
        was_broken, self._stamp = self._broken is not None, stamp
        try:
            self._records = {r.id: r for r in self._read()} if stamp else {}
            self._broken = None
        except KeyFileError as exc:
            self._records, self._broken = {}, exc
            log.error("every API key is refused (503) until the key file is fixed: %s", exc)
        if was_broken and self._broken is None:
            log.warning("the key file is readable again: keys are checked as before")
        active = {i for i, r in self._records.items() if r.revoked is None}
        self._passed = {i: m for i, m in self._passed.items() if i in active}

    # the file --------------------------------------------------------------------------------
    def _read(self) -> builtins.list[KeyRecord]:
        try:
            doc: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
            return [KeyRecord.model_validate(r) for r in doc.get("keys", [])]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            reason = f"{exc.error_count()} invalid field(s)" if isinstance(exc, ValidationError) else str(exc)
            raise KeyFileError(f"{self.path.name} cannot be read as the key file: {reason}") from None

    @contextmanager
    def _editing(self) -> Iterator[builtins.list[KeyRecord]]:
        """Read, change and atomically replace the file, one writer at a time."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = self._read()
            yield records
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"keys": [r.model_dump(mode="json") for r in records]}, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)


@dataclass(slots=True)
class _Passed:
    """The SHA-256 of the key that passed scrypt for an id (with that record's salt), until ``expires``."""

    salt: str
    digest: bytes
    expires: float


def open_keys(home: Path) -> KeyStore:
    return KeyStore(home / "keys.json")
