"""The workshop's progress store: SQLite in WAL mode under `--data-dir`, so a room survives a restart.

Tables: `rooms` (id, title, hashed join code, locked, created), `learners` (id = lab id, room, display name,
hashed session secret and rejoin code, joined, removed), `transitions` (every step state change of every
learner, written at once). Secrets are never stored: session secrets (high entropy) as SHA-256, join and rejoin
codes (short, typed by people) with scrypt and a salt. Every call is small and synchronous; callers on the event
loop run them with `asyncio.to_thread`. Nothing expires unless the instructor removes it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
  id TEXT PRIMARY KEY, title TEXT NOT NULL, join_hash TEXT NOT NULL, locked INTEGER NOT NULL DEFAULT 0,
  created REAL NOT NULL, closed REAL
);
CREATE TABLE IF NOT EXISTS learners (
  id TEXT PRIMARY KEY, room TEXT NOT NULL REFERENCES rooms(id), name TEXT NOT NULL, name_key TEXT NOT NULL,
  session_hash TEXT NOT NULL, rejoin_hash TEXT NOT NULL, joined REAL NOT NULL, removed REAL,
  UNIQUE (room, name_key)
);
CREATE TABLE IF NOT EXISTS transitions (
  learner TEXT NOT NULL REFERENCES learners(id), step TEXT NOT NULL, state TEXT NOT NULL, message TEXT NOT NULL,
  hint TEXT NOT NULL, time REAL NOT NULL, duration REAL
);
CREATE INDEX IF NOT EXISTS transitions_learner ON transitions (learner, time);
"""
LEARNER_COLUMNS = "id, room, name, session_hash, rejoin_hash, joined, removed"
TRANSITION_COLUMNS = "learner, step, state, message, hint, time, duration"


def hash_secret(secret: str) -> str:
    """A high-entropy secret (a session cookie) as stored: its SHA-256."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def hash_code(code: str, salt: bytes | None = None) -> str:
    """A short code people type (join, rejoin) as stored: scrypt with a random salt, `salt$hash` in hex."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(code.strip().upper().encode("utf-8"), salt=salt, n=2**12, r=8, p=1, dklen=32)
    return f"{salt.hex()}${digest.hex()}"


def code_matches(code: str, stored: str) -> bool:
    salt, _, _ = stored.partition("$")
    try:
        expected = hash_code(code, bytes.fromhex(salt))
    except ValueError:
        return False
    return hmac.compare_digest(expected, stored)


@dataclass(frozen=True)
class RoomRow:
    id: str
    title: str
    join_hash: str
    locked: bool
    created: float


@dataclass(frozen=True)
class LearnerRow:
    id: str
    room: str
    name: str
    session_hash: str
    rejoin_hash: str
    joined: float
    removed: float | None


@dataclass(frozen=True)
class Transition:
    learner: str
    step: str
    state: str
    message: str
    hint: str
    time: float
    duration: float | None


class Store:
    """One SQLite database file (WAL); thread-safe through one connection guarded by a lock."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: every statement is its own transaction (each write here is one statement)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _sql(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        """Run one statement under the lock; its rows."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- rooms ----------------------------------------------------------------------------------------------------

    def add_room(self, room_id: str, title: str, join_hash: str) -> None:
        self._sql(
            "INSERT INTO rooms (id, title, join_hash, created) VALUES (?, ?, ?, ?)",
            (room_id, title, join_hash, time.time()),
        )

    def set_join_hash(self, room_id: str, join_hash: str) -> None:
        self._sql("UPDATE rooms SET join_hash = ? WHERE id = ?", (join_hash, room_id))

    def set_locked(self, room_id: str, locked: bool) -> None:
        self._sql("UPDATE rooms SET locked = ? WHERE id = ?", (int(locked), room_id))

    def rooms(self) -> list[RoomRow]:
        rows = self._sql(
            "SELECT id, title, join_hash, locked, created FROM rooms WHERE closed IS NULL ORDER BY created"
        )
        return [RoomRow(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]

    # -- learners -------------------------------------------------------------------------------------------------

    def add_learner(self, row: LearnerRow) -> None:
        self._sql(
            "INSERT INTO learners (id, room, name, name_key, session_hash, rejoin_hash, joined) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (row.id, row.room, row.name, row.name.casefold(), row.session_hash, row.rejoin_hash, row.joined),
        )

    def set_session_hash(self, learner_id: str, session_hash: str) -> None:
        self._sql("UPDATE learners SET session_hash = ? WHERE id = ?", (session_hash, learner_id))

    def remove_learner(self, learner_id: str) -> None:
        self._sql("UPDATE learners SET removed = ? WHERE id = ?", (time.time(), learner_id))

    def learners(self, room_id: str) -> list[LearnerRow]:
        sql = f"SELECT {LEARNER_COLUMNS} FROM learners WHERE room = ? AND removed IS NULL ORDER BY joined"
        return [LearnerRow(*r) for r in self._sql(sql, (room_id,))]

    def name_taken(self, room_id: str, name: str) -> bool:
        """A name is kept by its learner, even once removed, so a removed learner's record stays theirs."""
        return bool(self._sql("SELECT 1 FROM learners WHERE room = ? AND name_key = ?", (room_id, name.casefold())))

    # -- progress -------------------------------------------------------------------------------------------------

    def add_transition(self, t: Transition) -> None:
        self._sql(
            f"INSERT INTO transitions ({TRANSITION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (t.learner, t.step, t.state, t.message, t.hint, t.time, t.duration),
        )

    def transitions(self, learner_id: str) -> list[Transition]:
        rows = self._sql(
            f"SELECT {TRANSITION_COLUMNS} FROM transitions WHERE learner = ? ORDER BY time, rowid", (learner_id,)
        )
        return [Transition(*r) for r in rows]
