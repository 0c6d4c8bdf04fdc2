"""Task-record stores of the controller: in memory, SQLite, or none."""

from .base import BaseDB, DBOpenError, NoData
from .dictdb import DictDB
from .nodb import NoDB
from .sqlitedb import SQLiteDB

#: command-line flag name -> import string of the store class
DB_CLASSES = {
    "dictdb": "jupyter_hub_ctl.controller.db.dictdb.DictDB",
    "sqlitedb": "jupyter_hub_ctl.controller.db.sqlitedb.SQLiteDB",
    "nodb": "jupyter_hub_ctl.controller.db.nodb.NoDB",
}

__all__ = [
    "DB_CLASSES",
    "BaseDB",
    "DBOpenError",
    "DictDB",
    "NoDB",
    "NoData",
    "SQLiteDB",
]
