"""Errors the command line turns into exit codes (1: bad input, 2: misuse)."""

from __future__ import annotations


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
