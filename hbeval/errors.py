"""Errors the command line turns into exit codes (1: bad input, 2: misuse)."""

from __future__ import annotations

import errno

#: ``errno`` of a write that failed because the disk is full, over quota or read-only.
DISK_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "read-only file system"}
#: The same faults as libraries that wrap them (DuckDB, SQLite) word them.
_DISK_TEXTS = {"no space left on device": "no space left on device", "disk quota exceeded": "disk quota exceeded",
               "read-only file system": "read-only file system", "database or disk is full": "no space left on device"}


class HbevalError(Exception):
    """Base class of hbeval's own errors."""

    exit_code = 1


class InputError(HbevalError):
    """Bad input: the message names the file, and the row and column where known.

    ``row`` is the row number as a spreadsheet shows it (the header is row 1).
    """

    def __init__(self, message: str, file: str | None = None, row: int | None = None, column: str | None = None):
        self.message = message
        self.file = file
        self.row = row
        self.column = column
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(f"file {self.file}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column {self.column}")
        return (", ".join(where) + ": " if where else "") + self.message


class CheckFailed(HbevalError):
    """A check that ran and found a problem (tampered registry, changed results)."""


class UsageError(HbevalError):
    """The command was called the wrong way."""

    exit_code = 2


def disk_problem(exc: BaseException) -> str | None:
    """``"no space left on device while writing X"`` when ``exc`` (or an exception it was
    raised from) is a full disk, an exceeded quota or a read-only file system; else ``None``.

    One rule for every command: the command line prints the message and exits 1. Nothing is
    half-written, because every output is built aside and moved into place.
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            what = e.filename or e.filename2
            return DISK_ERRNOS[e.errno] + (f" while writing {what}" if what else " while writing the output")
        text = str(e).lower()
        for needle, msg in _DISK_TEXTS.items():
            if needle in text:
                return f"{msg} while writing ({str(e).splitlines()[0][:200]})"
        e = e.__cause__ or e.__context__
    return None
