"""`.npy` and `.npz` files read safely: sizes from the headers are checked against the
file and the memory available before an array is allocated; no pickles."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from archdsl.io.limits import check_input_file, check_memory, format_bytes
from archdsl.io.paths import ArchIOError


def load_npy(path: str | Path, what: str = "input") -> np.ndarray:
    """One array from a `.npy` file.

    Raises:
        ArchIOError: not a regular file, not `.npy` (an `.npz` is named as such), a
            header that claims more than the file holds or memory allows, a truncated
            file, or object data.
    """
    path = Path(path)
    size = check_input_file(path, what)
    try:
        with path.open("rb") as f:
            magic = f.read(6)
            f.seek(0)
            if magic[:2] == b"PK":
                raise ArchIOError(
                    f"{what} `{path}` is an .npz archive; expected one array in a .npy file",
                    help="save a single array with `np.save(path, x)`",
                )
            shape, dtype = _header(f, f"{what} `{path}`")
            _check_sizes(shape, dtype, size - f.tell(), f"{what} `{path}`")
            f.seek(0)
            return np.load(f, allow_pickle=False)
    except ArchIOError:
        raise
    except (OSError, ValueError, EOFError) as error:
        raise ArchIOError(f"cannot read {what} `{path}` as .npy: {_reason(error)}") from None


def load_npz(path: str | Path, what: str = "data") -> dict[str, np.ndarray]:
    """Every array of an `.npz` file, by name.

    Raises:
        ArchIOError: as `load_npy`, and for a truncated or corrupt archive (BadZipFile).
    """
    path = Path(path)
    check_input_file(path, what)
    label = f"{what} `{path}`"
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if m.filename.endswith(".npy")]
            total = 0
            for member in members:
                with archive.open(member) as f:
                    shape, dtype = _header(f, f"{label}: `{member.filename[:-4]}`")
                    header_bytes = f.tell() if f.seekable() else 0
                _check_sizes(
                    shape,
                    dtype,
                    member.file_size - header_bytes,
                    f"{label}: `{member.filename[:-4]}`",
                    check_ram=False,
                )
                total += _nbytes(shape, dtype)
            check_memory(total, f"loading {label}")
            with np.load(path, allow_pickle=False) as arrays:
                return {name: arrays[name] for name in arrays.files}
    except ArchIOError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as error:
        raise ArchIOError(
            f"cannot read {label} as .npz: {_reason(error)}",
            help="the file is truncated or not an .npz archive",
        ) from None
    except (OSError, ValueError, EOFError, KeyError, NotImplementedError) as error:
        raise ArchIOError(f"cannot read {label} as .npz: {_reason(error)}") from None


def _header(f: IO[bytes], label: str) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, EOFError, SyntaxError, TypeError) as error:
        raise ArchIOError(f"cannot read {label}: not a .npy array ({_reason(error)})") from None
    if dtype.hasobject:
        raise ArchIOError(f"{label} holds Python objects; only numeric arrays are read")
    return tuple(int(d) for d in shape), dtype


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(shape) * dtype.itemsize


def _check_sizes(
    shape: tuple[int, ...], dtype: np.dtype, stored: int, label: str, *, check_ram: bool = True
) -> None:
    needed = _nbytes(shape, dtype)
    if needed > stored:
        raise ArchIOError(
            f"{label}: the header claims shape {shape} of {dtype} "
            f"({format_bytes(needed)}), but the file holds only {format_bytes(stored)}",
            help="the file is truncated or its header is wrong",
        )
    if check_ram:
        check_memory(needed, f"loading {label}")


def _reason(error: Any) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
