"""API keys for ``flywheel serve``: scoped, stored only as salted scrypt hashes, revocable at once.

A key reads ``fw_<id>_<secret>``: the id finds its record without trying every hash, and only that
one record's hash is computed. Records live in ``$FLYWHEEL_HOME/keys.json`` (mode 0600), rewritten
atomically under a file lock; a server re-reads it whenever the file changed (one ``stat`` a
request), so a revocation from the CLI is refused by every worker from the next request on.

scrypt is slow on purpose (~50 ms); a server keeps, per key id, a SHA-256 of the last key that
passed it, so a known key costs one hash a request. That memo never outlives the record: the
record (revoked or not) is read from the current file on every request.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from flywheel.errors import UsageError

PREFIX = "fw"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MAX_KEY_CHARS = 200
# scrypt cost: 16 MB and ~50 ms per hash on one core (RFC 7914's interactive setting).
_N, _R, _P = 2**14, 8, 1


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
        self._passed: dict[tuple[str, str], bytes] = {}  # (id, salt) -> sha256 of the key that passed scrypt

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
        """(the active record the key names, whether it passed already). No record: unknown or revoked."""
        found = key_id(presented)
        record = self._current().get(found) if found else None
        if record is None or record.revoked is not None:
            return None, False
        memo = self._passed.get((record.id, record.salt))
        digest = hashlib.sha256(presented.encode()).digest()
        return record, memo is not None and hmac.compare_digest(memo, digest)

    def verify(self, presented: str) -> KeyRecord | None:
        """The active record of a key that matches its hash, else None (unknown, revoked or wrong)."""
        record, passed = self.lookup(presented)
        if record is None or passed:
            return record
        if not hmac.compare_digest(_hash(presented, bytes.fromhex(record.salt)), bytes.fromhex(record.hash)):
            return None
        with self._lock:
            self._passed[(record.id, record.salt)] = hashlib.sha256(presented.encode()).digest()
        return record

    def _current(self) -> dict[str, KeyRecord]:
        """The records, re-read when the file was replaced (every write replaces it: a new inode)."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._records = {r.id: r for r in self._read()} if stamp else {}
                self._stamp = stamp
            return self._records

    # the file --------------------------------------------------------------------------------
    def _read(self) -> list[KeyRecord]:
        try:
            doc: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise UsageError(f"{self.path}: cannot be read as the key file: {exc}") from exc
        return [KeyRecord.model_validate(r) for r in doc.get("keys", [])]

    @contextmanager
    def _editing(self) -> Iterator[list[KeyRecord]]:
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


def open_keys(home: Path) -> KeyStore:
    return KeyStore(home / "keys.json")
