"""A psycopg cursor whose `description` is built only when someone reads it.

psycopg builds `cursor.description` afresh on every access: one `Column` per result column,
each decoding its name and looking up its type. SQLAlchemy asks for it after every
statement but, for a statement it has run before, only to see that it is not None (the
result's shape is cached on the compiled statement). For the 24 columns of a deal that was
~0.15 ms of CPU per read (measured side by side), spent on objects nobody looked at.

`LazyDescription` is the same sequence of psycopg `Column`s, made on first use from the
result it was taken from (so it stays right even if the cursor runs another statement).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

import psycopg
from psycopg import pq

_RETURNS_TUPLES = (
    pq.ExecStatus.TUPLES_OK,
    pq.ExecStatus.SINGLE_TUPLE,
    pq.ExecStatus.TUPLES_CHUNK,
)


class _ResultSnapshot:
    """What `psycopg.Column` reads from a cursor, pinned to one result."""

    __slots__ = ("pgresult", "_encoding", "adapters")

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self.pgresult = cursor.pgresult
        self._encoding = cursor._encoding
        self.adapters = cursor.adapters


class LazyDescription(Sequence[psycopg.Column]):
    __slots__ = ("_snapshot", "_size", "_columns")

    def __init__(self, cursor: psycopg.Cursor[Any], size: int) -> None:
        self._snapshot = _ResultSnapshot(cursor)
        self._size = size
        self._columns: list[psycopg.Column] | None = None

    def _built(self) -> list[psycopg.Column]:
        if self._columns is None:
            snapshot: Any = self._snapshot
            self._columns = [psycopg.Column(snapshot, i) for i in range(self._size)]
        return self._columns

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, index: int) -> psycopg.Column: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[psycopg.Column]: ...
    def __getitem__(self, index: int | slice) -> psycopg.Column | Sequence[psycopg.Column]:
        return self._built()[index]

    def __repr__(self) -> str:
        return repr(self._built())


class LazyDescriptionCursor(psycopg.Cursor[Any]):
    @property
    def description(self) -> LazyDescription | None:  # type: ignore[override]
        # The same test as psycopg's own property: columns, or a result that says "tuples".
        result = self.pgresult
        if result and (result.nfields or result.status in _RETURNS_TUPLES):
            return LazyDescription(self, result.nfields)
        return None
