"""The study's log: participants, their tokens and every event, in one SQLite file (WAL mode).

An event is committed (``synchronous=FULL``: on disk, not only in the OS cache) before the server
answers the request that brought it, so a page that was told "saved" can lose nothing, even when the
server is killed. The log is append-only: an event is never changed or deleted.

Tables: ``meta(key, value)`` (the study's name and fingerprint: a log is only ever used with the
study it was made for), ``participants(id, token, created)`` and ``events(participant, seq, task,
type, payload, result, t_server)``: ``seq`` counts a participant's events from 0, ``task`` is the
position in their plan (-1 for consent), ``payload`` the event as the page sent it (JSON, the client's
clock included), ``result`` what the server logged beside it (JSON: the candidates' screen order,
the model's latency, the Dice on screen after the event).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["Store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS participants (id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    participant INTEGER NOT NULL REFERENCES participants(id),
    seq INTEGER NOT NULL,
    task INTEGER NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    result TEXT NOT NULL,
    t_server REAL NOT NULL,
    PRIMARY KEY (participant, seq)
);
"""


class Store:
    """The log of one study (see the module docstring); safe to share between threads.

    Args:
        path: the SQLite file (created with its folder if missing).
        study_name, fingerprint: the study the log belongs to; a log made for another study is refused.
    Raises:
        ValueError: naming ``db`` when the file cannot be opened or belongs to another study.
    """

    def __init__(self, path: str | Path, study_name: str, fingerprint: str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ValueError(f"db: cannot open {self.path}: {exc}") from None
        self._lock = threading.Lock()
        with self._lock:
            rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            if not rows:
                self._write("INSERT INTO meta VALUES (?, ?), (?, ?)",
                            ("study", study_name, "fingerprint", fingerprint))
            elif rows.get("fingerprint") != fingerprint:
                raise ValueError(f"db: {self.path} holds the log of another study ({rows.get('study')!r}, or "
                                 "this study's file changed since); use another --db")

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        # One statement per transaction, committed before returning (autocommit, synchronous=FULL).
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(sql, args)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    # -- participants --------------------------------------------------------------------------------
    def ensure_participants(self, n: int) -> list[tuple[int, str]]:
        """Make sure participants 0..n-1 exist (new ones get fresh random tokens); return all ``(id, token)``."""
        with self._lock:
            have = {pid for (pid,) in self._db.execute("SELECT id FROM participants")}
            for pid in range(n):
                if pid not in have:
                    self._write("INSERT INTO participants VALUES (?, ?, ?)",
                                (pid, secrets.token_urlsafe(16), time.time()))
            return [(int(p), str(t)) for p, t in self._db.execute("SELECT id, token FROM participants ORDER BY id")]

    def participant(self, token: str) -> int | None:
        """The participant holding ``token``, or None."""
        with self._lock:
            row = self._db.execute("SELECT id FROM participants WHERE token = ?", (token,)).fetchone()
        return None if row is None else int(row[0])

    def participants(self) -> list[int]:
        with self._lock:
            return [int(p) for (p,) in self._db.execute("SELECT id FROM participants ORDER BY id")]

    # -- events --------------------------------------------------------------------------------------
    def append(self, participant: int, seq: int, task: int, payload: dict[str, Any], result: dict[str, Any]) -> None:
        """Commit one event; ``seq`` must be the participant's next (the primary key refuses a second one)."""
        with self._lock:
            self._write("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (participant, seq, task, str(payload["type"]), json.dumps(payload, sort_keys=True),
                         json.dumps(result, sort_keys=True), time.time()))

    def events(self, participant: int | None = None) -> list[dict[str, Any]]:
        """Events in order (of one participant, or of all by participant then seq), payloads and results parsed."""
        sql = "SELECT participant, seq, task, type, payload, result, t_server FROM events"
        args: tuple[Any, ...] = ()
        if participant is not None:
            sql += " WHERE participant = ?"
            args = (participant,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY participant, seq", args).fetchall()
        return [{"participant": int(p), "seq": int(s), "task": int(t), "type": ty, "payload": json.loads(pl),
                 "result": json.loads(r), "t_server": float(ts)} for p, s, t, ty, pl, r, ts in rows]
