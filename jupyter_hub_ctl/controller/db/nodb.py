"""A task-record store that keeps nothing."""

from __future__ import annotations

from .base import BaseDB, NoData, check_keys
from .query import parse_query

_MESSAGE = "this hub keeps no task records (NoDB)"


class NoDB(BaseDB):
    """Accepts every write and forgets it; every read raises :class:`NoData`.

    Hubs using it still run tasks; only history, result lookup of finished
    tasks, resubmission and database queries answer with an error.
    """

    backend_name = "nodb"

    def add_record(self, msg_id, rec):
        pass

    def update_record(self, msg_id, rec):
        pass

    def drop_record(self, msg_id):
        pass

    def drop_matching_records(self, query):
        parse_query(query)

    def get_record(self, msg_id):
        raise NoData(_MESSAGE)

    def find_records(self, query, keys=None):
        parse_query(query)
        if keys is not None:
            check_keys(keys)
        raise NoData(_MESSAGE)

    def get_history(self):
        raise NoData(_MESSAGE)
