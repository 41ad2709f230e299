"""Errors that the CLI turns into one clear line and exit status 2."""


class UsageError(Exception):
    """A problem the user can fix: bad config, missing file, unknown name.

    The message names the offending key or file and, where there is a finite set,
    the allowed values. The CLI prints it without a traceback and exits 2.
    """


class DataMissingError(UsageError):
    """A dataset's files are not where we looked; the message says how to get them."""


class CheckpointError(UsageError):
    """A checkpoint is missing, truncated or was written for another model."""
