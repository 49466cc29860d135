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


class DiskFull(RsftError):
    """A write failed because the disk (or quota) is full. Nothing written so far is lost: a torn append or a
    half-written temporary file is cut off or removed on the next run, which resumes where this one stopped."""


def disk_full(error: BaseException) -> str | None:
    """When `error` (or what it was raised from) means "no space left on device", a one-line message naming
    what was being written (as far as the error tells); else None. Libraries say it differently: an OSError
    with errno ENOSPC or EDQUOT (Python), "No space left on device" (torch's writer), "os error 28" (the
    safetensors writer in Rust)."""
    import errno

    seen = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e)
        if (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or any(
                s in text for s in ("No space left on device", "os error 28", "StorageFull", "Disk quota exceeded")):
            where = getattr(e, "filename", None)
            return disk_full_message(where) if where else disk_full_message(None, text.splitlines()[0][:200])
        e = e.__cause__ or e.__context__
    return None


def disk_full_message(where: object | None, detail: str = "") -> str:
    """The one line for a full disk: what was being written (when known), or the writer's own words."""
    said = f"disk full: {where}: no space left on device" if where else "disk full: no space left on device" + (
        f" ({detail})" if detail else "")
    return f"{said}; free some space and run the same command again (it resumes where this one stopped)"
