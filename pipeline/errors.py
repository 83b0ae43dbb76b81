"""Errors raised by lcpipe for bad input or bad configuration.

The CLI turns every :class:`LcpipeError` into one line on stderr and exit
code 2; anything else is a bug and shows a traceback.
"""

from __future__ import annotations

__all__ = ["LcpipeError", "InputError", "OutputError", "ConfigError"]


class LcpipeError(Exception):
    """Base class of all errors lcpipe reports to the user as one line."""


class InputError(LcpipeError):
    """A file, table or light curve that cannot be used.

    Parameters
    ----------
    source : str or path-like
        The file (or other source) the problem was found in.
    problem : str
        What is wrong, in words a user can act on.
    object_id : str, optional
        The light curve concerned, if the problem is specific to one.
    """

    def __init__(self, source: object, problem: str, object_id: object | None = None) -> None:
        self.source = str(source)
        self.problem = problem
        self.object_id = None if object_id is None else str(object_id)
        where = self.source if self.object_id is None else (
            f"{self.source}: object {self.object_id}"
        )
        super().__init__(f"{where}: {problem}")


class OutputError(InputError):
    """An output path that cannot or must not be written (an input, a folder, no permission)."""


class ConfigError(LcpipeError):
    """An invalid option value (bins, normalisation, column mapping, ...)."""
