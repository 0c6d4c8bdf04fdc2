"""Task records in an SQLite file, written in batches by a dedicated thread.

Only the store's own thread touches the connection.  Writes return at once:
they are coalesced per msg_id in memory (an insert followed by updates becomes
one INSERT, several updates one UPDATE) and written every ``commit_interval``
seconds in one transaction per ``max_batch`` operations.  Reads run on the
same thread after pending writes are flushed, so they see every earlier write.

Storage layout: see :mod:`.sqlformat`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import threading
import time
from collections import deque
from concurrent.futures import Future

from traitlets import Float, Integer, Unicode, default, observe, validate

from .base import BaseDB, DBOpenError, check_keys, iso_utc
from .pending import DELETE, INSERT, UPDATE, DropMatching, PendingWrites
from .query import Condition, match, parse_query, to_sql
from .stream import sqlite_stream
from .sqlformat import (
    COLUMNS,
    INDEXED,
    KINDS,
    decode_value,
    encode_value,
    missing_columns,
    quote,
    table_sql,
)

#: value of ``PRAGMA max_page_count`` standing for "no limit"
_NO_PAGE_LIMIT = 4294967294
_STATS = (
    "inserts",
    "updates",
    "deletes",
    "commits",
    "missed_updates",
    "failed_flushes",
)


class SQLiteDB(BaseDB):
    """Task records in an SQLite database file (WAL mode, batched commits)."""

    backend_name = "sqlitedb"

    location = Unicode(
        config=True,
        help="Directory of the database file (default: the current directory).",
    )
    filename = Unicode(
        "tasks.db",
        config=True,
        help="Name of the database file inside ``location`` (':memory:' for none).",
    )
    table = Unicode(
        "hubctl_tasks",
        config=True,
        help="""Table holding the records. If the file has a table of this name
        with other columns, ``<table>_1``, ``<table>_2``, ... is used instead.""",
    )
    commit_interval = Float(
        0.1,
        config=True,
        help="""Seconds between commits of pending writes: the window of writes a
        crash can lose. Reads and ``flush()`` commit immediately.""",
    )
    max_batch = Integer(
        2000,
        config=True,
        help="""Most operations per transaction; reaching this many pending
        operations also starts a commit before ``commit_interval`` has passed.""",
    )
    max_retry_interval = Float(
        5.0,
        config=True,
        help="""Longest wait, in seconds, between attempts to write task records after a
        write failed (disk full, I/O error); waits double from 0.5 s up to this.""",
    )
    max_page_count = Integer(
        0,
        config=True,
        help="""Upper bound on the database size in pages (0: unlimited). Writes
        beyond it fail as if the disk were full; meant for testing.""",
    )

    @default("location")
    def _location_default(self):
        return os.getcwd()

    @validate("commit_interval")
    def _check_interval(self, proposal):
        if proposal.value < 0:
            raise ValueError("commit_interval must not be negative")
        return proposal.value

    @validate("max_batch")
    def _check_batch(self, proposal):
        if proposal.value < 1:
            raise ValueError("max_batch must be at least 1")
        return proposal.value

    @validate("table")
    def _check_table(self, proposal):
        if not proposal.value or "\0" in proposal.value:
            raise ValueError(f"invalid table name {proposal.value!r}")
        return proposal.value

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        #: rows inserted/updated/deleted, transactions committed, updates of
        #: absent records, failed flush attempts
        self.stats = dict.fromkeys(_STATS, 0)
        self._cond = threading.Condition()
        self._pending = PendingWrites()
        self._due = 0.0
        self._requests: deque = deque()
        self._stopping = False
        self._closed = False
        self._error: str | None = None
        self._retry_delay = 0.0
        self._conn: sqlite3.Connection | None = None
        self._active_table = ""
        self._json_each = False
        self._warned_keys: set[str] = set()
        opened: Future = Future()
        self._thread = threading.Thread(
            target=self._run, args=(opened,), name="hubctl-sqlitedb", daemon=True
        )
        self._thread.start()
        try:
            opened.result()
        except BaseException:
            self._thread.join()
            self._closed = True
            raise

    @property
    def path(self) -> str:
        """The database file."""
        if self.filename == ":memory:":
            return self.filename
        return os.path.join(os.path.expanduser(self.location), self.filename)

    @property
    def active_table(self) -> str:
        """The table actually used (``table`` or a numbered variant)."""
        return self._active_table

    # -- opening (DB thread) --------------------------------------------------

    def _open(self) -> None:
        path = self.path
        conn = None
        try:
            if path != ":memory:":
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                if not os.path.exists(path):
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = sqlite3.connect(path, isolation_level=None, timeout=10)
            if not conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                # a new file: let purges give pages back (PRAGMA incremental_vacuum)
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._conn = conn
            self._apply_page_limit()
            self._active_table = self._choose_table()
        except (sqlite3.Error, OSError) as e:
            if conn is not None:
                conn.close()
            self._conn = None
            raise DBOpenError(f"Cannot open task database {path}: {e}", path) from e
        try:
            conn.execute("SELECT count(*) FROM json_each('[1]')").fetchone()
            self._json_each = True
        except sqlite3.Error:
            self._json_each = False

    def _apply_page_limit(self) -> None:
        limit = self.max_page_count if self.max_page_count > 0 else _NO_PAGE_LIMIT
        self._conn.execute(f"PRAGMA max_page_count = {int(limit)}").fetchone()

    def _choose_table(self) -> str:
        conn = self._conn
        for n in itertools.count():
            name = self.table if n == 0 else f"{self.table}_{n}"
            info = conn.execute(f"PRAGMA table_info({quote(name)})").fetchall()
            missing = missing_columns(info) if info else []
            if missing is None:
                continue
            if not info:
                conn.execute(table_sql(name))
            for col, declared in missing:  # a table of an earlier version: add what it lacks
                conn.execute(f"ALTER TABLE {quote(name)} ADD COLUMN {quote(col)} {declared}".rstrip())
            for col in INDEXED:
                conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {quote(f'{name}_{col}_idx')} "
                    f"ON {quote(name)} ({quote(col)})"
                )
            if n:
                self.log.warning(
                    "Table %r in %s has different columns; task records go to table %r",
                    self.table,
                    self.path,
                    name,
                )
            return name
        raise AssertionError("unreachable")

    @observe("max_page_count")
    def _page_limit_changed(self, change):
        if self.__dict__.get("_conn") is not None and not self._stopping:
            self._call(self._apply_page_limit, flush_first=False)

    # -- the DB thread --------------------------------------------------------

    def _run(self, opened: Future) -> None:
        try:
            self._open()
        except BaseException as e:
            opened.set_exception(e)
            return
        opened.set_result(None)
        try:
            self._serve()
        except BaseException as e:
            self._error = f"task database thread failed: {e!r}"
            self.log.critical("Task database thread failed", exc_info=True)
        finally:
            with self._cond:
                requests, self._requests = self._requests, deque()
            for _, fut, _ in requests:
                if fut.set_running_or_notify_cancel():
                    fut.set_exception(RuntimeError("the task database is closed"))
            self._conn.close()

    def _flush_due(self) -> bool:
        if not self._pending:
            return False
        if len(self._pending) >= self.max_batch and self._error is None:
            return True
        return time.monotonic() >= self._due

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not (self._requests or self._stopping or self._flush_due()):
                    timeout = self._due - time.monotonic() if self._pending else None
                    self._cond.wait(None if timeout is None else max(0.0, timeout))
                requests, self._requests = self._requests, deque()
                stopping = self._stopping
                due = self._flush_due()
            if due or stopping or any(flush_first for _, _, flush_first in requests):
                self._flush()
            for fn, fut, _ in requests:
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn())
                    except BaseException as e:
                        fut.set_exception(e)
            if stopping:
                if self._pending:
                    self.log.error(
                        "Closing %s with %d task-record writes not stored: %s",
                        self.path,
                        len(self._pending),
                        self._error,
                    )
                return

    def _flush(self) -> bool:
        with self._cond:
            chunks = self._pending.take(self.max_batch)
        for i, chunk in enumerate(chunks):
            try:
                self._write(chunk)
            except Exception as e:
                try:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                with self._cond:
                    self.stats["missed_updates"] += self._pending.put_back(chunks[i:])
                self._write_failed(e)
                return False
            chunks[i] = None
        if self._error is not None:
            self.log.warning("Task records are written to %s again", self.path)
        self._error = None
        self._retry_delay = 0.0
        return True

    def _write_failed(self, exc: Exception) -> None:
        self.stats["failed_flushes"] += 1
        message = f"writing task records failed: {exc}"
        if self._error is None:
            self.log.error(
                "%s (%s); %d operations kept in memory for a retry",
                message,
                self.path,
                len(self._pending),
            )
        self._error = message
        self._retry_delay = min(
            self.max_retry_interval, max(0.5, self.commit_interval, 2 * self._retry_delay)
        )
        with self._cond:
            self._due = time.monotonic() + self._retry_delay

    def _write(self, chunk) -> None:
        """Apply one chunk of queued writes in one transaction (DB thread)."""
        conn, table, log = self._conn, quote(self._active_table), self.log
        counts = {"inserts": 0, "updates": 0, "deletes": 0, "missed_updates": 0}
        conn.execute("BEGIN IMMEDIATE")
        if isinstance(chunk, DropMatching):
            counts["deletes"] += self._delete_matching(*chunk.sql)
        else:
            deletes, inserts, updates = [], [], {}
            for msg_id, (kind, fields) in chunk.items():
                if kind == DELETE:
                    deletes.append((msg_id,))
                elif kind == INSERT:
                    row = [encode_value(c, k, fields.get(c), log) for c, k in COLUMNS]
                    inserts.append(row)
                else:
                    cols = tuple(fields)
                    row = [encode_value(c, KINDS[c], fields[c], log) for c in cols]
                    updates.setdefault(cols, []).append((*row, msg_id))
            if deletes:
                conn.executemany(f"DELETE FROM {table} WHERE msg_id = ?", deletes)
                counts["deletes"] += len(deletes)
            if inserts:
                names = ", ".join(quote(c) for c, _ in COLUMNS)
                marks = ", ".join("?" * len(COLUMNS))
                sql = f"INSERT OR REPLACE INTO {table} ({names}) VALUES ({marks})"
                conn.executemany(sql, inserts)
                counts["inserts"] += len(inserts)
            for cols, rows in updates.items():
                assign = ", ".join(f"{quote(c)} = ?" for c in cols)
                cur = conn.executemany(
                    f"UPDATE {table} SET {assign} WHERE msg_id = ?", rows
                )
                counts["updates"] += cur.rowcount
                counts["missed_updates"] += len(rows) - cur.rowcount
        conn.execute("COMMIT")
        counts["commits"] = 1
        for key, value in counts.items():
            self.stats[key] += value
        if counts["missed_updates"]:
            self.log.warning(
                "%d task-record updates named records that do not exist",
                counts["missed_updates"],
            )

    def _delete_matching(self, where: str, params: list, rest: list) -> int:
        table = quote(self._active_table)
        if not rest:
            return self._conn.execute(
                f"DELETE FROM {table} WHERE {where}", params
            ).rowcount
        doomed = [(r["msg_id"],) for r in self._select(where, params, rest, [])]
        self._conn.executemany(f"DELETE FROM {table} WHERE msg_id = ?", doomed)
        return len(doomed)

    def _retain(self, cutoff, max_records: int, max_bytes: int) -> list[str]:
        conn, table = self._conn, quote(self._active_table)
        doomed: list[str] = []
        if cutoff is not None:
            doomed += [r[0] for r in conn.execute(
                f"SELECT msg_id FROM {table} WHERE completed IS NOT NULL AND completed < ?",
                (iso_utc(cutoff),))]
        if max_records:
            (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            if count - len(doomed) > max_records:
                extra = count - len(doomed) - int(max_records * 0.9)
                doomed += [r[0] for r in conn.execute(
                    f"SELECT msg_id FROM {table} WHERE completed IS NOT NULL ORDER BY completed "
                    f"LIMIT ? OFFSET ?", (extra, len(doomed)))]
        self._delete_ids(doomed)
        if max_bytes:
            used = self._used_bytes()
            if used > max_bytes:
                (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                if count:
                    per_row = used / count
                    extra = int((used - max_bytes * 0.9) / per_row) + 1
                    more = [r[0] for r in conn.execute(
                        f"SELECT msg_id FROM {table} WHERE completed IS NOT NULL ORDER BY completed "
                        "LIMIT ?", (extra,))]
                    self._delete_ids(more)
                    doomed += more
        if doomed:
            self._reclaim()
        return doomed

    def _delete_ids(self, msg_ids: list) -> None:
        if not msg_ids:
            return
        conn, table = self._conn, quote(self._active_table)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(f"DELETE FROM {table} WHERE msg_id = ?", [(m,) for m in msg_ids])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.stats["deletes"] += len(msg_ids)

    def _used_bytes(self) -> int:
        conn = self._conn
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
        (size,) = conn.execute("PRAGMA page_size").fetchone()
        return (pages - free) * size

    def _reclaim(self) -> None:
        conn = self._conn
        if self.path == ":memory:":
            return
        try:
            (mode,) = conn.execute("PRAGMA auto_vacuum").fetchone()
            if mode == 2:  # incremental
                conn.executescript("PRAGMA incremental_vacuum;")  # every step, not just the first
            else:  # a file made before auto_vacuum was set: rebuild it once, with it set
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as e:  # e.g. no room for the rebuild: the space stays reusable
            self.log.warning("Could not give freed space in %s back to the disk: %s", self.path, e)

    # -- reads (DB thread) ----------------------------------------------------

    def _select(self, where, params, rest, keys) -> list[dict]:
        wanted = list(KINDS) if keys is None else ["msg_id", *keys]
        extra = [c.key for c in rest if c.key not in wanted]
        columns = wanted + list(dict.fromkeys(extra))
        sql = (
            f"SELECT {', '.join(quote(c) for c in columns)} "
            f"FROM {quote(self._active_table)} WHERE {where}"
        )
        kinds, log = [(c, KINDS[c]) for c in columns], self.log
        found = []
        for row in self._conn.execute(sql, params):
            rec = {
                c: decode_value(c, k, raw, log)
                for (c, k), raw in zip(kinds, row, strict=True)
            }
            if rest and not match(rec, rest):
                continue
            for c in extra:
                del rec[c]
            if keys is None and rec["display_data"] is None:
                del rec["display_data"]
            found.append(rec)
        return found

    def _get(self, msg_id: str) -> dict:
        found = self._select(*to_sql([Condition("msg_id", "$eq", msg_id)], KINDS), None)
        if not found:
            raise KeyError(f"No such task record: {msg_id!r}")
        return found[0]

    def _history(self) -> list[str]:
        sql = (
            f"SELECT msg_id FROM {quote(self._active_table)} "
            "WHERE submitted IS NOT NULL ORDER BY submitted"
        )
        return [row[0] for row in self._conn.execute(sql)]

    # -- calling the DB thread ------------------------------------------------

    def _submit(self, fn, flush_first: bool = True) -> Future:
        fut: Future = Future()
        with self._cond:
            if self._stopping or self._closed:
                raise RuntimeError(f"the task database {self.path} is closed")
            if not self._thread.is_alive():
                raise RuntimeError(
                    self._error or "the task database thread is not running"
                )
            self._requests.append((fn, fut, flush_first))
            self._cond.notify()
        return fut

    def _call(self, fn, flush_first: bool = True):
        if threading.current_thread() is self._thread:
            return fn()
        return self._submit(fn, flush_first).result()

    async def _acall(self, fn, flush_first: bool = True):
        return await asyncio.wrap_future(self._submit(fn, flush_first))

    # -- writes ---------------------------------------------------------------

    def _fields(self, rec: dict, copy: bool = True) -> dict:
        """The storable fields of ``rec``; without ``copy`` its dicts and lists are kept
        (the caller handed them over), and so is ``rec`` itself when every key has a column."""
        if not copy and KINDS.keys() >= rec.keys():
            return rec
        fields = {}
        for key, value in rec.items():
            if key not in KINDS:
                if key not in self._warned_keys:
                    self._warned_keys.add(key)
                    self.log.warning(
                        "Task record key %r has no column; not stored", key
                    )
                continue
            if copy:
                if isinstance(value, dict):
                    value = dict(value)
                elif isinstance(value, list):
                    value = list(value)
            fields[key] = value
        return fields

    def _enqueue(self, msg_id: str | None, op) -> None:
        """Queue one write; ``msg_id`` None queues a drop-matching barrier."""
        with self._cond:
            if self._stopping or self._closed:
                raise RuntimeError(f"the task database {self.path} is closed")
            if not self._thread.is_alive():
                raise RuntimeError(self._error or "the task database thread stopped")
            if not self._pending:
                self._due = time.monotonic() + self.commit_interval
                self._cond.notify()
            if msg_id is None:
                self._pending.add_barrier(op)
            else:
                self._pending.add(msg_id, op)
            if len(self._pending) == self.max_batch:
                self._cond.notify()

    def add_record(self, msg_id, rec):
        fields = self._fields(rec)
        fields["msg_id"] = msg_id
        self._enqueue(msg_id, (INSERT, fields))

    def update_record(self, msg_id, rec):
        fields = self._fields(rec)
        fields.pop("msg_id", None)
        if fields:
            self._enqueue(msg_id, (UPDATE, fields))

    def adopt_record(self, msg_id, rec):
        fields = self._fields(rec, copy=False)
        fields["msg_id"] = msg_id
        self._enqueue(msg_id, (INSERT, fields))

    def merge_record(self, msg_id, rec):
        fields = self._fields(rec, copy=False)
        fields.pop("msg_id", None)
        if fields:
            self._enqueue(msg_id, (UPDATE, fields))
        return True

    def drop_record(self, msg_id):
        self._enqueue(msg_id, (DELETE, None))

    def drop_matching_records(self, query):
        self._enqueue(
            None, DropMatching(to_sql(parse_query(query), KINDS, self._json_each))
        )

    async def adrop_matching_records(self, query):
        sql = to_sql(parse_query(query), KINDS, self._json_each)
        self._enqueue(None, DropMatching(sql))  # in order with the writes queued before it
        if self._error is not None:
            # writes are failing (disk or page limit full): delete now as well, so a purge frees
            # the space the queued writes wait for; the queued drop repeats it in order later
            await self._acall(lambda: self._delete_now(sql))

    def _delete_now(self, sql) -> int:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            n = self._delete_matching(*sql)
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.log.warning("Purging task records in %s failed too: %s", self.path, e)
            return 0
        self.stats["deletes"] += n
        if n:
            self._due = time.monotonic()  # retry the waiting writes at once
        return n

    # -- reads ----------------------------------------------------------------

    def _find_call(self, query, keys):
        sql = to_sql(parse_query(query), KINDS, self._json_each)
        keys = None if keys is None else check_keys(keys)
        return lambda: self._select(*sql, keys)

    def find_records(self, query, keys=None):
        return self._call(self._find_call(query, keys))

    async def afind_records(self, query, keys=None):
        return await self._acall(self._find_call(query, keys))

    def get_record(self, msg_id):
        return self._call(lambda: self._get(msg_id))

    async def aget_record(self, msg_id):
        return await self._acall(lambda: self._get(msg_id))

    def get_history(self):
        return self._call(self._history)

    async def aget_history(self):
        return await self._acall(self._history)

    def _stream_call(self, since, until, limit):
        return lambda: sqlite_stream(self._conn, self._active_table, self._json_each, since, until, limit)

    def task_stream(self, since, until, limit):
        return self._call(self._stream_call(since, until, limit))

    async def atask_stream(self, since, until, limit):
        return await self._acall(self._stream_call(since, until, limit))

    def retain(self, older_than=None, max_records=0, max_bytes=0):
        return self._call(lambda: self._retain(older_than, max_records, max_bytes))

    async def aretain(self, older_than=None, max_records=0, max_bytes=0):
        return await self._acall(lambda: self._retain(older_than, max_records, max_bytes))

    def reclaim(self):
        self._call(self._reclaim)

    async def areclaim(self):
        await self._acall(self._reclaim)

    def flush(self):
        if self._closed:
            return not self._pending
        return self._call(self._flush, flush_first=False)

    async def aflush(self):
        if self._closed:
            return not self._pending
        return await self._acall(self._flush, flush_first=False)

    # -- lifecycle ------------------------------------------------------------

    def health(self):
        error = self._error
        if error is None and not self._closed and not self._thread.is_alive():
            error = "the task database thread is not running"
        return {
            "ok": error is None,
            "error": error,
            "backend": self.backend_name,
            "path": self.path,
            "table": self._active_table,
            "pending": len(self._pending),
            "closed": self._closed,
        }

    def close(self):
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join()
        self._closed = True
