"""The one atomic writer: a file is replaced whole or not at all.

The new contents go to a temporary file in the target's folder (so `os.replace` is a
rename within one file system), named `.<name>.<pid>.<random>.archdsl-tmp<suffix>`;
it is flushed, fsynced, given the mode `open()` would give (the old file's, or
0666 less the umask), and renamed over the target. On any failure the temporary file
is removed and the old file is untouched; a temporary file left by a killed process
(its pid no longer running) is removed by the next write to that folder.

Targets that are not regular files (`/dev/null`, `/dev/stdout`, a FIFO with a reader)
are written directly, as `open()` would.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

from archdsl.io.paths import ArchIOError, check_output, os_error

TEMP_MARK: Final = ".archdsl-tmp"
"""Every temporary file archdsl writes has this in its name."""
_TEMP_RE: Final = re.compile(r"^\..*\.(\d+)\.[0-9a-f]{8}\.archdsl-tmp(\.[^.]*)?$")
_ACTIVE: set[str] = set()
"""Temporary files this process is writing now: never cleaned as stale."""


def write_bytes(path: str | Path, data: bytes, what: str = "output") -> Path:
    """Write `data` to `path` atomically; returns the path written.

    Raises:
        ArchIOError: one line with the path and the OS's reason; the old file is whole.
    """
    with atomic_open(path, "wb", what=what) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str, what: str = "output", encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (no newline translation).

    Raises:
        ArchIOError: as `write_bytes`.
    """
    return write_bytes(path, text.encode(encoding), what)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, what: str = "output") -> Iterator[IO[Any]]:
    """Open a file object whose contents replace `path` when the block ends without error.

    `mode` is `"wb"` or `"w"` (UTF-8, no newline translation). For writers that take a
    file object: `np.save`, `json.dump`, matplotlib's `savefig`, `onnx.save`.

    Raises:
        ArchIOError: the path is unusable or the write failed; nothing is left behind.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes whole files: mode 'wb' or 'w', not {mode!r}")
    target = check_output(path, what)
    if _is_special(target):
        with _open_special(target, mode) as f:
            yield f
        return
    clean_stale_temps(target.parent)
    keep_mode = _mode_for(target)
    temp = _temp_name(target)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise os_error(target, error) from None
    _ACTIVE.add(str(temp))
    try:
        with os.fdopen(
            fd, mode, **({"encoding": "utf-8", "newline": ""} if mode == "w" else {})
        ) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), keep_mode)
        os.replace(temp, target)
    except OSError as error:
        _remove(temp)
        raise os_error(target, error) from None
    except BaseException:
        _remove(temp)
        raise
    finally:
        _ACTIVE.discard(str(temp))
    _fsync_folder(target.parent)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, what: str = "output") -> Iterator[Path]:
    """A temporary path for a program that writes files by name (Graphviz's `dot -o`);
    when the block ends without error the file there replaces `path`.

    The temporary name keeps `path`'s extension, for writers that pick the format by it.

    Raises:
        ArchIOError: the path is unusable, the writer made no file, or the rename failed.
    """
    target = check_output(path, what)
    if _is_special(target):
        raise ArchIOError(f"{what} `{target}` is not a regular file; give a file name")
    clean_stale_temps(target.parent)
    keep_mode = _mode_for(target)
    temp = _temp_name(target)
    _ACTIVE.add(str(temp))
    try:
        yield temp
        if not temp.is_file():
            raise ArchIOError(f"cannot write `{target}`: the writer produced no file")
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.fchmod(fd, keep_mode)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except OSError as error:
        _remove(temp)
        raise os_error(target, error) from None
    except BaseException:
        _remove(temp)
        raise
    finally:
        _ACTIVE.discard(str(temp))
    _fsync_folder(target.parent)


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Remove temporary files in `folder` left by archdsl processes that no longer run.

    Returns:
        The files removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if match is None or entry.path in _ACTIVE or str(Path(entry.path)) in _ACTIVE:
            continue
        if _running(int(match.group(1))) and int(match.group(1)) != os.getpid():
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def _temp_name(target: Path) -> Path:
    suffix = target.suffix if len(target.suffix) <= 16 else ""
    stem = target.name[:64]
    return target.with_name(f".{stem}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_MARK}{suffix}")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _mode_for(target: Path) -> int:
    """The mode `open()` would leave: the old file's, else 0666 less the umask."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _is_special(target: Path) -> bool:
    try:
        return not stat.S_ISREG(target.stat().st_mode)
    except OSError:
        return False


@contextlib.contextmanager
def _open_special(target: Path, mode: str) -> Iterator[IO[Any]]:
    """`/dev/null`, `/dev/stdout`, a FIFO: written in place; a FIFO must have a reader."""
    try:
        # O_NONBLOCK: opening a FIFO nobody reads fails (ENXIO) instead of waiting forever.
        fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.set_blocking(fd, True)
    except OSError as error:
        raise os_error(target, error) from None
    try:
        with os.fdopen(
            fd, mode, **({"encoding": "utf-8", "newline": ""} if mode == "w" else {})
        ) as f:
            yield f
    except OSError as error:
        raise os_error(target, error) from None


def _remove(temp: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(temp)


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
