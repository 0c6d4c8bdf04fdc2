"""A task-record store that keeps nothing but the task stream."""

from __future__ import annotations

from traitlets import Integer

from .base import STREAM_KEYS, BaseDB, NoData, check_keys, result_status
from .query import compile_query, parse_query
from .stream import ChangeOrder

_MESSAGE = "this hub keeps no task records (NoDB)"
_FIELDS = frozenset(STREAM_KEYS[:-1])


class NoDB(BaseDB):
    """Keeps no task records: every read raises :class:`NoData`.

    Hubs using it still run tasks; only history, result lookup of finished
    tasks, resubmission and database queries answer with an error.  For the task
    stream it keeps the few fields of each task in flight and of the most recently
    changed finished ones (``stream_limit``).
    """

    backend_name = "nodb"

    stream_limit = Integer(
        10000,
        config=True,
        help="How many finished tasks the task stream remembers (tasks in flight are always "
        "remembered); the oldest changed ones are forgotten first.",
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._entries: dict = {}  # msg_id -> the task-stream fields of its record
        self._changes = ChangeOrder()
        self._finished = 0

    def add_record(self, msg_id, rec):
        self._forget(msg_id)
        if rec.get("changed") is None:  # output of a task the hub has not seen submitted
            return
        entry = {key: rec.get(key) for key in _FIELDS}
        entry["msg_id"] = msg_id
        entry["status"] = result_status(rec.get("result_content"))
        self._entries[msg_id] = entry
        self._changes.touch(msg_id, entry["changed"])
        if entry["completed"] is not None:
            self._count_finished()

    def update_record(self, msg_id, rec):
        entry = self._entries.get(msg_id)
        if entry is None:
            return
        finished = entry["completed"] is not None
        for key in _FIELDS.intersection(rec):
            entry[key] = rec[key]
        if "result_content" in rec:
            entry["status"] = result_status(rec["result_content"])
        if "changed" in rec:
            self._changes.touch(msg_id, entry["changed"])
        if not finished and entry["completed"] is not None:
            self._count_finished()

    def _count_finished(self) -> None:
        self._finished += 1
        limit = self.stream_limit
        if self._finished > limit + max(1, limit // 10):  # forget a tenth at a time
            for msg_id in self._changes.oldest():
                if self._finished <= limit:
                    break
                if self._entries[msg_id]["completed"] is not None:
                    self._forget(msg_id)

    def _forget(self, msg_id) -> None:
        entry = self._entries.pop(msg_id, None)
        if entry is not None:
            self._changes.discard(msg_id)
            if entry["completed"] is not None:
                self._finished -= 1

    def drop_record(self, msg_id):
        self._forget(msg_id)

    def drop_matching_records(self, query):
        test = compile_query(query)
        for msg_id in [m for m, entry in self._entries.items() if test(entry)]:
            self._forget(msg_id)

    def task_stream(self, since, until, limit):
        found, truncated = self._changes.newest(self._entries, since, until, limit)
        return [dict(entry) for entry in found], truncated

    def get_record(self, msg_id):
        raise NoData(_MESSAGE)

    def find_records(self, query, keys=None):
        parse_query(query)
        if keys is not None:
            check_keys(keys)
        raise NoData(_MESSAGE)

    def get_history(self):
        raise NoData(_MESSAGE)
