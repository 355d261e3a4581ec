"""Writing files atomically (whole or not at all), and saying in words why a write failed."""

import errno
import os
import re
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# torch's C++ writer reports a failed write (a full disk) as a RuntimeError with one of these.
TORCH_WRITE_FAILURES = ("unexpected pos", "file write failed", "PytorchStreamWriter failed")


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call write(file) on a temporary file beside `path`, fsync it, then rename it over `path`.

    Any failure removes the temporary file and leaves `path` as it was; torch's C++ text for
    a failed write becomes an OSError, so callers handle one kind of error.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        if error.errno is not None:  # name the file being written, not its temporary twin
            error.filename = str(path)
        raise
    except RuntimeError as error:
        if not any(text in str(error) for text in TORCH_WRITE_FAILURES):
            raise
        message = f"torch could not write the file ({first_line(error)})"
        raise OSError(errno.EIO, message, str(path)) from None
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file whole or not at all (a full disk leaves no empty or partial file)."""
    atomic_write(path, lambda file: file.write(text.encode()))


def write_failure(path: Path, error: OSError, needed: int | None = None) -> str:
    """Why writing `path` failed and what fixes it, as part of a sentence."""
    folder = path.parent
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"writing {path} failed ({error.strerror}): the folder {folder} is not writable; "
            "make it writable, or copy the run folder somewhere writable and resume from the copy"
        )
    free = shutil.disk_usage(folder).free if folder.is_dir() else None
    full = error.errno in (errno.ENOSPC, errno.EDQUOT) or (
        needed is not None and free is not None and free < needed
    )
    if not full:
        return f"writing {path} failed ({error.strerror or first_line(error)}); check the disk and {folder}"
    space = f"it needs about {megabytes(needed)}, " if needed else ""
    available = f"{megabytes(free)} free" if free is not None else "the disk is full"
    return (
        f"writing {path} failed: no space left on the device ({space}{available}); free some space"
    )


def megabytes(size: int) -> str:
    """A size in bytes as megabytes with one decimal, e.g. '12.3 MB'."""
    return f"{size / 1e6:.1f} MB"


def first_line(error: Exception) -> str:
    """The first line of an error message without terminal colour codes, at most 120
    characters, cut between words."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    line = (text.splitlines() or [type(error).__name__])[0]
    return textwrap.shorten(line, 120, placeholder=" ...")
