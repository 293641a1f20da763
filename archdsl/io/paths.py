"""Output paths checked before any work starts, and OS errors turned into one-line errors."""

from __future__ import annotations

import errno
import os
import resource
import stat
from pathlib import Path

from archdsl.errors import ArchError

NAME_MAX = 255
"""Bytes in one file name on the usual file systems (ext4, xfs, btrfs, APFS)."""


class ArchIOError(ArchError):
    """A file that cannot be read or written: the path and the operating system's reason."""


def os_error(path: str | Path, error: OSError, verb: str = "write") -> ArchIOError:
    """`cannot write `out.json`: No space left on device (ENOSPC)`, as one line."""
    code = errno.errorcode.get(error.errno or 0, "")
    reason = error.strerror or str(error) or type(error).__name__
    detail = code
    if error.errno == errno.EFBIG:
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY:
            detail += f"; the file-size limit (`ulimit -f`) is {soft:,} bytes"
    return ArchIOError(f"cannot {verb} `{path}`: {reason}" + (f" ({detail})" if detail else ""))


def check_output(path: str | Path, what: str = "output") -> Path:
    """Check, before any work, that a file can be written at `path`; nothing is created.

    The folder must exist and be writable, the path must not be a folder, an existing
    file must be writable, and the name must fit the file system.

    Raises:
        ArchIOError: naming the path and what is wrong.
    """
    text = os.fspath(path)
    if not text:
        raise ArchIOError(f"the {what} path is empty")
    if "\0" in text:
        raise ArchIOError(f"the {what} path {text!r} contains a NUL character")
    target = Path(text)
    _check_name(target, what)
    try:
        info = target.stat()
    except (FileNotFoundError, NotADirectoryError):
        info = None  # the folder check below says which part is missing or not a folder
    except OSError as error:
        raise os_error(target, error, "use") from None
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise ArchIOError(
                f"{what} `{target}` is a folder; expected a file name",
                help=f"write into it with `{target / 'NAME'}`",
            )
        if stat.S_ISBLK(info.st_mode) or stat.S_ISSOCK(info.st_mode):
            raise ArchIOError(f"{what} `{target}` is a device or socket, not a file")
        if not os.access(target, os.W_OK):
            raise ArchIOError(f"{what} `{target}` is read-only (EACCES)")
        if stat.S_ISREG(info.st_mode):
            target = Path(os.path.realpath(target))  # write through a symlink, as open() does
    if info is None or stat.S_ISREG(info.st_mode):
        _check_folder(target.parent, what, target)
    return target


def _check_name(target: Path, what: str) -> None:
    size = len(target.name.encode("utf-8", "surrogateescape"))
    if size > NAME_MAX:
        raise ArchIOError(
            f"{what} file name `{target.name[:40]}...` is too long: "
            f"{size} bytes, at most {NAME_MAX} (ENAMETOOLONG)"
        )


def _check_folder(folder: Path, what: str, target: Path) -> None:
    shown = folder if str(folder) else Path(".")
    blocker = next((p for p in reversed(folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None or (folder.exists() and not folder.is_dir()):
        raise ArchIOError(f"cannot write {what} `{target}`: `{blocker or shown}` is not a folder")
    if not folder.exists():
        raise ArchIOError(
            f"cannot write {what} `{target}`: the folder `{shown}` does not exist",
            help=f"create it first (`mkdir -p {shown}`)",
        )
    if not folder.is_dir():
        raise ArchIOError(f"cannot write {what} `{target}`: `{shown}` is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ArchIOError(
            f"cannot write {what} `{target}`: the folder `{shown}` is not writable (EACCES)"
        )


def check_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """Check that `path` is, or can be created as, a writable folder; nothing is created.

    Raises:
        ArchIOError: the path is a file, sits under a file, or cannot be written.
    """
    text = os.fspath(path)
    if not text:
        raise ArchIOError(f"the {what} path is empty")
    if "\0" in text:
        raise ArchIOError(f"the {what} path {text!r} contains a NUL character")
    folder = Path(text)
    for part in folder.parts:
        _check_name(Path(part), what)
    if folder.exists():
        if not folder.is_dir():
            raise ArchIOError(f"{what} `{folder}` is a file, not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ArchIOError(f"{what} `{folder}` is not writable (EACCES)")
        return folder
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ArchIOError(f"cannot create {what} `{folder}`: `{parent}` is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ArchIOError(
            f"cannot create {what} `{folder}`: the folder `{parent}` is not writable (EACCES)"
        )
    return folder


def make_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """Create the folder `path` (and its parents) when it is first written to.

    Raises:
        ArchIOError: the OS refused.
    """
    folder = check_output_dir(path, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise os_error(folder, error, "create folder") from None
    return folder
