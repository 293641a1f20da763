"""Files on disk: the one atomic writer, output paths checked before any work, and
inputs checked from their headers and `stat` before anything is allocated.

Every file archdsl writes goes through `write_bytes`, `write_text`, `atomic_open` or
`atomic_path`: a reader sees the old file or the new one, never half of either, and a
failed write is one `ArchIOError` line naming the path and the OS's reason. Commands
call `check_output` / `check_output_dir` on every output path before they start work.
May import `archdsl.errors` only, so that every part can use it; `archdsl.io.arrays`
(safe `.npy`/`.npz` loading) also needs NumPy and is imported by name.
"""

from archdsl.io.atomic import (
    TEMP_MARK,
    atomic_open,
    atomic_path,
    clean_stale_temps,
    write_bytes,
    write_text,
)
from archdsl.io.limits import (
    available_memory,
    check_input_file,
    check_memory,
    format_bytes,
)
from archdsl.io.paths import (
    ArchIOError,
    check_output,
    check_output_dir,
    make_output_dir,
    os_error,
)

__all__ = [
    "TEMP_MARK",
    "ArchIOError",
    "atomic_open",
    "atomic_path",
    "available_memory",
    "check_input_file",
    "check_memory",
    "check_output",
    "check_output_dir",
    "clean_stale_temps",
    "format_bytes",
    "make_output_dir",
    "os_error",
    "write_bytes",
    "write_text",
]
