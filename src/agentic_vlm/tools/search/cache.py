"""A disk cache of search results, so that a run that searched the web can be replayed exactly, without network.

Entries are keyed by the backend (its ``cache_namespace``: the API, or the local index's corpus fingerprint), the
normalised query and the number of results asked for, and hold the results before formatting: changing how results
are shown to the model does not invalidate a recording.

Modes:
    ``off``: no cache.
    ``read_write``: answer from the cache when it can, else search and record the results (the recording run).
    ``replay``: answer only from the cache; a query it lacks is an error, never a network request.

The store is one SQLite file in WAL mode: readers never block, concurrent writers (one per training process) wait
for each other through SQLite's lock (``busy_timeout``) rather than fail, and a crash cannot leave a torn entry.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import unicodedata
from pathlib import Path

from .results import SearchResult

CACHE_MODES = ("off", "read_write", "replay")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS search_results (
    backend TEXT NOT NULL,
    query TEXT NOT NULL,
    k INTEGER NOT NULL,
    results TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (backend, query, k)
)
"""


def normalize_query(query: str) -> str:
    """The query as the cache keys it: Unicode-normalised, case-folded, with runs of whitespace made one space."""
    return " ".join(unicodedata.normalize("NFKC", query).casefold().split())


class SearchCache:
    """The SQLite store behind the ``read_write`` and ``replay`` modes. Its async methods run SQLite in a thread.

    In ``replay`` mode the file is opened read-only: it must exist, and nothing is ever written to it.
    """

    def __init__(self, path: str | Path, mode: str):
        if mode not in ("read_write", "replay"):
            raise ValueError(f"a SearchCache is for mode 'read_write' or 'replay', got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        if mode == "replay":
            if not self.path.is_file():
                raise FileNotFoundError(f"replay-only search cache {self.path} does not exist")
            # A read-only open still needs WAL's side files; the recording run leaves them, or SQLite makes them.
            self._connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self._connection.execute("PRAGMA journal_mode=WAL")
            # In WAL mode, NORMAL syncs at checkpoints only: a power cut may lose the last entries, never corrupt.
            self._connection.execute("PRAGMA synchronous=NORMAL")
            self._connection.execute(_SCHEMA)
            self._connection.commit()
        # One connection, used from asyncio's worker threads one at a time.
        self._lock = threading.Lock()

    @property
    def replay_only(self) -> bool:
        return self.mode == "replay"

    def get(self, backend: str, query: str, k: int) -> list[SearchResult] | None:
        with self._lock:
            row = self._connection.execute(
                "SELECT results FROM search_results WHERE backend = ? AND query = ? AND k = ?",
                (backend, normalize_query(query), k),
            ).fetchone()
        return None if row is None else [SearchResult(**result) for result in json.loads(row[0])]

    def put(self, backend: str, query: str, k: int, results: list[SearchResult]) -> None:
        if self.replay_only:
            raise RuntimeError(f"search cache {self.path} is replay-only")
        payload = json.dumps([result.to_dict() for result in results], ensure_ascii=False)
        with self._lock, self._connection:
            self._connection.execute(
                "INSERT OR REPLACE INTO search_results VALUES (?, ?, ?, ?, ?)",
                (backend, normalize_query(query), k, payload, time.time()),
            )

    async def aget(self, backend: str, query: str, k: int) -> list[SearchResult] | None:
        return await asyncio.to_thread(self.get, backend, query, k)

    async def aput(self, backend: str, query: str, k: int, results: list[SearchResult]) -> None:
        await asyncio.to_thread(self.put, backend, query, k, results)

    def __len__(self) -> int:
        with self._lock:
            return self._connection.execute("SELECT COUNT(*) FROM search_results").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._connection.close()
