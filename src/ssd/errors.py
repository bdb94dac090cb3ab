"""Errors the command line prints as one line, without a traceback."""

from __future__ import annotations

from os import PathLike


class SSDError(Exception):
    """A problem the user can fix (bad config, missing file, bad argument)."""


class DataError(SSDError):
    """A problem with one input file: the message names the file and what is wrong."""

    def __init__(self, path: str | PathLike[str], message: str) -> None:
        self.path = str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")
