"""The mining state of one workspace, in SQLite (WAL): registered sources, candidate clips with their
decisions, background jobs. Every write is one short transaction, so concurrent requests and a job that
dies half-way leave it consistent (a candidate row exists only once its clip file is on disk)."""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DB_NAME = "wakeword.db"
STATUSES = ("pending", "confirmed", "discarded")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, role TEXT NOT NULL, added TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY, clip TEXT NOT NULL, sha256 TEXT UNIQUE NOT NULL, source TEXT NOT NULL,
    offset_s REAL NOT NULL, duration_s REAL NOT NULL, score REAL NOT NULL, model TEXT NOT NULL,
    created TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending', decided_at TEXT, injected_at TEXT,
    injected_into TEXT);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, args TEXT NOT NULL, status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '', result TEXT, started TEXT NOT NULL,
    finished TEXT, pid INTEGER);
CREATE TABLE IF NOT EXISTS eval_sets (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, spec TEXT NOT NULL, added TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS served (
    id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, added TEXT NOT NULL);
"""


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True)
class Candidate:
    id: int
    clip: str  # path of the cut WAV (inside the workspace)
    sha256: str
    source: str  # the pool file it was cut from
    offset_s: float  # start of the cut within the source, seconds
    duration_s: float
    score: float  # the model's peak score in the cut
    model: str  # checkpoint that raised the false alarm
    created: str
    status: str  # pending | confirmed | discarded
    decided_at: str | None
    injected_at: str | None
    injected_into: str | None


class MiningStore:
    """Open (creating if needed) ``<workspace>/wakeword.db``."""

    def __init__(self, workspace: str | Path):
        self.workspace = Path(workspace).resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.path = self.workspace / DB_NAME
        with self._conn() as c:
            c.execute("PRAGMA journal_mode=WAL")
            c.executescript(_SCHEMA)

    @contextmanager
    def _conn(self):
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _tx(self):
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

    # ---------------------------------------------------------------- sources
    def add_source(self, path: str | Path, role: str = "negative") -> None:
        """Register a mining-pool file (long negative recording or negative clip)."""
        p = Path(path).resolve()
        if not p.is_file():
            raise FileNotFoundError(f"no file {p}")
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO sources(path, role, added) VALUES (?, ?, ?)", (str(p), role, now()))

    def sources(self, role: str | None = None) -> list[str]:
        with self._conn() as c:
            q = "SELECT path FROM sources" + (" WHERE role = ?" if role else "") + " ORDER BY id"
            return [r["path"] for r in c.execute(q, (role,) if role else ())]

    # ---------------------------------------------------------------- evaluation sets
    def add_eval_set(self, name: str, spec: dict) -> None:
        """Register an evaluation set: {"yaml": path} or {"positives": [dirs/files], "negatives": [...]}.
        Its files are protected from mining."""
        if not name.strip():
            raise ValueError("an evaluation set needs a name")
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO eval_sets(name, spec, added) VALUES (?, ?, ?)",
                      (name, json.dumps(spec), now()))

    def eval_sets(self) -> dict[str, dict]:
        with self._conn() as c:
            return {r["name"]: json.loads(r["spec"]) for r in c.execute("SELECT name, spec FROM eval_sets ORDER BY id")}

    # ---------------------------------------------------------------- candidates
    def add_candidate(self, clip: str, sha256: str, source: str, offset_s: float, duration_s: float, score: float,
                      model: str) -> int | None:
        """Insert a candidate; returns its id, or None when the same audio (sha256) is already queued."""
        with self._tx() as c:
            cur = c.execute("INSERT OR IGNORE INTO candidates(clip, sha256, source, offset_s, duration_s, score, model,"
                            " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (clip, sha256, source, offset_s, duration_s, score, model, now()))
            return cur.lastrowid if cur.rowcount else None

    def candidates(self, status: str | None = None, min_score: float | None = None, source: str | None = None,
                   ids: list[int] | None = None) -> list[Candidate]:
        q, args = "SELECT * FROM candidates WHERE 1=1", list[object]()
        if status:
            if status not in STATUSES + ("injected",):
                raise ValueError(f"unknown status '{status}'; known: {', '.join(STATUSES)}, injected")
            if status == "injected":
                q += " AND injected_at IS NOT NULL"
            else:
                q += " AND status = ?"
                args.append(status)
        if min_score is not None:
            q += " AND score >= ?"
            args.append(min_score)
        if source:
            q += " AND source LIKE ?"
            args.append(f"%{source}%")
        if ids is not None:
            q += f" AND id IN ({','.join('?' * len(ids))})"
            args += list(ids)
        q += " ORDER BY score DESC, id"
        with self._conn() as c:
            return [Candidate(**dict(r)) for r in c.execute(q, args)]

    def get(self, cid: int) -> Candidate:
        got = self.candidates(ids=[cid])
        if not got:
            raise KeyError(f"no candidate {cid}")
        return got[0]

    def decide(self, ids: list[int], decision: str) -> int:
        """Confirm or discard candidates (stored with the decision time). Injected ones stay as they are.
        Returns how many changed."""
        if decision not in ("confirmed", "discarded", "pending"):
            raise ValueError(f"decision must be confirmed, discarded or pending, not '{decision}'")
        if not ids:
            return 0
        with self._tx() as c:
            known = {r["id"] for r in c.execute(f"SELECT id FROM candidates WHERE id IN ({','.join('?' * len(ids))})",
                                                list(ids))}
            missing = set(ids) - known
            if missing:
                raise KeyError(f"no candidates {sorted(missing)}")
            cur = c.execute(f"UPDATE candidates SET status = ?, decided_at = ? WHERE injected_at IS NULL AND "
                            f"id IN ({','.join('?' * len(ids))})", [decision, now(), *ids])
            return cur.rowcount

    def mark_injected(self, cid: int, data_dir: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE candidates SET injected_at = ?, injected_into = ? WHERE id = ?", (now(), data_dir, cid))

    def counts(self) -> dict[str, int]:
        with self._conn() as c:
            out = {s: 0 for s in STATUSES}
            for r in c.execute("SELECT status, COUNT(*) AS n FROM candidates GROUP BY status"):
                out[r["status"]] = r["n"]
            out["injected"] = c.execute("SELECT COUNT(*) FROM candidates WHERE injected_at IS NOT NULL").fetchone()[0]
            return out

    # ---------------------------------------------------------------- files the UI may serve
    def allow_serving(self, path: str | Path) -> int:
        p = str(Path(path).resolve())
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO served(path, added) VALUES (?, ?)", (p, now()))
            return c.execute("SELECT id FROM served WHERE path = ?", (p,)).fetchone()[0]

    def served_path(self, sid: int) -> str | None:
        with self._conn() as c:
            r = c.execute("SELECT path FROM served WHERE id = ?", (sid,)).fetchone()
            return r["path"] if r else None

    # ---------------------------------------------------------------- jobs
    def create_job(self, kind: str, args: dict) -> int:
        with self._tx() as c:
            return c.execute("INSERT INTO jobs(kind, args, status, started) VALUES (?, ?, 'running', ?)",
                             (kind, json.dumps(args), now())).lastrowid

    def update_job(self, jid: int, progress: float | None = None, message: str | None = None,
                   status: str | None = None, result: dict | None = None, pid: int | None = None) -> None:
        sets: list[str] = []
        args: list = []
        for col, val in (("progress", progress), ("message", message), ("status", status), ("pid", pid)):
            if val is not None:
                sets.append(f"{col} = ?")
                args.append(val)
        if result is not None:
            sets.append("result = ?")
            args.append(json.dumps(result))
        if status in ("done", "failed"):
            sets.append("finished = ?")
            args.append(now())
        if not sets:
            return
        with self._tx() as c:
            c.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", [*args, jid])

    def job(self, jid: int) -> dict:
        with self._conn() as c:
            r = c.execute("SELECT * FROM jobs WHERE id = ?", (jid,)).fetchone()
        if r is None:
            raise KeyError(f"no job {jid}")
        d = dict(r)
        d["args"] = json.loads(d["args"])
        d["result"] = json.loads(d["result"]) if d["result"] else None
        return d

    def jobs(self, kind: str | None = None, limit: int = 20) -> list[dict]:
        with self._conn() as c:
            q = "SELECT id FROM jobs" + (" WHERE kind = ?" if kind else "") + " ORDER BY id DESC LIMIT ?"
            ids = [r["id"] for r in c.execute(q, ((kind, limit) if kind else (limit,)))]
        return [self.job(i) for i in ids]
