"""Errors a user can cause, each with the exit status the command line reports for it."""


class VqcodecError(Exception):
    """Base class: a one-line message, no traceback, a distinct exit status."""

    exit_code = 1


class UsageError(VqcodecError):
    exit_code = 2


class BadInputError(VqcodecError):
    """The input media cannot be read or is not supported."""

    exit_code = 3


class CorruptFileError(VqcodecError):
    """A .vqc file is damaged, truncated or not a .vqc file."""

    exit_code = 4


class MissingModelError(VqcodecError):
    """The file names a model (or model version) this installation does not have."""

    exit_code = 5


class MissingExtraError(VqcodecError):
    """A command needs an optional package that is not installed (named in the message)."""

    exit_code = 5
