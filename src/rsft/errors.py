"""User-facing errors.

`RsftError` is for mistakes a user can fix (bad config, bad data, missing
path). The CLI prints its message as one line and exits non-zero, with no
traceback. Anything else is a bug in rsft and keeps its traceback.
"""


class RsftError(Exception):
    """A user mistake: one line that names the file, line or key, and what was expected."""


class ConfigError(RsftError):
    """The config file or a command-line override is invalid."""


class DataError(RsftError):
    """An input data file is malformed or lacks a column."""


class RedoFrom(RsftError):
    """Raised by a stage when `stage` (an earlier one, or itself) must run again before the round can go on.

    The stage runner clears that stage and the ones after it, as ``--force`` would, then reports the message.
    """

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage
