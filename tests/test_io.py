"""The atomic writer, output checks and input limits (`archdsl.io`): a failed or killed
write leaves the old file whole and, after the next write, no temporary file."""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from archdsl.cli import main
from archdsl.io import (
    TEMP_MARK,
    ArchIOError,
    atomic_open,
    atomic_path,
    check_input_file,
    check_output,
    check_output_dir,
    clean_stale_temps,
    format_bytes,
    write_bytes,
    write_text,
)
from archdsl.io.arrays import load_npy, load_npz

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if TEMP_MARK in p.name)


# the writer -----------------------------------------------------------------------------------
def test_new_file_gets_the_mode_open_would_give(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_text(tmp_path / "a.txt", "hello")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640
    assert (tmp_path / "a.txt").read_text() == "hello"


def test_replacing_keeps_the_old_files_mode_and_writes_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "real.txt"
    target.write_text("old")
    target.chmod(0o600)
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert _temps(tmp_path) == []


def test_an_error_inside_the_block_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "out.npy"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write(b"half")
        raise RuntimeError("the writer failed")
    assert path.read_bytes() == b"old" and _temps(tmp_path) == []


def test_a_full_disk_is_one_line_with_the_os_reason() -> None:
    with pytest.raises(ArchIOError) as caught:
        write_bytes("/dev/full", b"x" * 100_000)
    assert str(caught.value) == "error: cannot write `/dev/full`: No space left on device (ENOSPC)"


def test_a_fifo_without_a_reader_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ArchIOError, match=r"pipe`: No such device or address \(ENXIO\)"):
        write_bytes(fifo, b"data")


def test_atomic_path_for_programs_that_write_by_name(tmp_path: Path) -> None:
    path = tmp_path / "net.svg"
    path.write_text("old")
    with atomic_path(path) as temp:
        assert temp.suffix == ".svg" and TEMP_MARK in temp.name
        temp.write_text("<svg/>")
    assert path.read_text() == "<svg/>"
    with pytest.raises(ArchIOError, match="the writer produced no file"), atomic_path(path):
        pass
    assert path.read_text() == "<svg/>" and _temps(tmp_path) == []


_FSIZE_WRITER = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
from archdsl.io import ArchIOError, write_bytes
try:
    write_bytes(sys.argv[1], b"n" * 100_000)
except ArchIOError as error:
    print(error, file=sys.stderr)
    sys.exit(1)
"""


def test_a_file_size_limit_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"the old contents")
    done = subprocess.run(
        [sys.executable, "-c", _FSIZE_WRITER, str(path)], capture_output=True, text=True, env=ENV
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (
        f"error: cannot write `{path}`: File too large "
        "(EFBIG; the file-size limit (`ulimit -f`) is 4,096 bytes)"
    )
    assert path.read_bytes() == b"the old contents" and _temps(tmp_path) == []


_SLOW_WRITER = """
import sys, time
from archdsl.io import atomic_open
with atomic_open(sys.argv[1]) as f:
    for _ in range(10_000):
        f.write(b"x" * 65536)
        f.flush()
        time.sleep(0.01)
"""


def test_a_killed_write_keeps_the_old_file_and_the_next_write_cleans_up(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"the old weights")
    child = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(path)], env=ENV)
    try:
        for _ in range(600):  # until the temporary file has data in it
            temps = [p for p in tmp_path.iterdir() if TEMP_MARK in p.name]
            if temps and temps[0].stat().st_size > 0:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the writer never started")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert path.read_bytes() == b"the old weights"
    assert len(_temps(tmp_path)) == 1  # left by the killed process...
    write_bytes(path, b"new")  # ...and removed by the next write to the folder
    assert path.read_bytes() == b"new" and _temps(tmp_path) == []


def test_only_temporary_files_of_dead_processes_are_cleaned(tmp_path: Path) -> None:
    alive = tmp_path / f".a.bin.{os.getppid()}.0123abcd{TEMP_MARK}.bin"
    dead = tmp_path / f".a.bin.{2**22 + 12345}.0123abcd{TEMP_MARK}.bin"
    other = tmp_path / ".a.bin.12345.tmp"
    for p in (alive, dead, other):
        p.write_text("")
    assert clean_stale_temps(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name])


# output paths, checked before any work ---------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "sub", r"output `.*sub` is a folder; expected a file name"),
        (lambda d: d / "missing" / "x.json", r"the folder `.*missing` does not exist"),
        (lambda d: d / "file.txt" / "x.json", r"`.*file\.txt` is not a folder"),
        (lambda d: d / ("n" * 300), r"is too long: 300 bytes, at most 255 \(ENAMETOOLONG\)"),
        (lambda d: "", "the output path is empty"),
    ],
)
def test_unusable_output_paths(tmp_path: Path, make, message: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(ArchIOError, match=message):
        check_output(make(tmp_path))


def test_output_folders_are_checked_not_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ArchIOError, match=r"checkpoint folder `.*file` is a file, not a folder"):
        check_output_dir(tmp_path / "file", "checkpoint folder")
    with pytest.raises(ArchIOError, match=r"cannot create .*: `.*file` is a file, not a folder"):
        check_output_dir(tmp_path / "file" / "a" / "b")
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()


def test_a_read_only_folder_is_refused_before_work(tmp_path: Path, monkeypatch) -> None:
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != tmp_path and real(p, mode))
    with pytest.raises(ArchIOError, match=r"the folder `.*` is not writable \(EACCES\)"):
        check_output(tmp_path / "out.json")


@pytest.mark.parametrize(
    "argv",
    [
        ["compile", "specs/lenet5.arch", "-o", "{d}/missing/m.jaxexport"],
        ["graph", "specs/lenet5.arch", "-o", "{d}/missing/net.dot"],
        ["run", "{d}/no.jaxexport", "--weights", "w", "--input", "x", "-o", "{d}/missing/o.npy"],
        ["train", "specs/lenet5.arch", "--data", "digits", "--checkpoint-dir", "{d}/f.txt"],
    ],
    ids=["compile", "graph", "run", "train"],
)
def test_every_output_option_is_checked_before_work(tmp_path: Path, capsys, argv) -> None:
    (tmp_path / "f.txt").write_text("")
    code = main(
        [
            a.format(d=tmp_path) if "{d}" in a else str(ROOT / a) if a.endswith(".arch") else a
            for a in argv
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") <= 2 and "Traceback" not in err
    assert "does not exist" in err or "is a file, not a folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_fmt_under_a_file_size_limit_keeps_the_source(tmp_path: Path) -> None:
    spec = tmp_path / "net.arch"
    body = "".join(f"    conv 8 3x3 same as c{i}\n" for i in range(300))
    original = f"network   N {{\n    input 32x32x3\n{body}}}\n"
    spec.write_text(original)
    script = textwrap.dedent(
        """
        import resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))
        from archdsl.cli import main
        sys.exit(main(["fmt", sys.argv[1]]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(spec)], capture_output=True, text=True, env=ENV
    )
    assert done.returncode == 1
    assert f"error: cannot write `{spec}`: File too large (EFBIG" in done.stderr
    assert "Traceback" not in done.stderr
    assert spec.read_text() == original and _temps(tmp_path) == []


# inputs: regular files, sizes from headers ----------------------------------------------------
def test_devices_fifos_and_folders_are_refused_as_inputs(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    for path, kind in (("/dev/zero", "a device"), (tmp_path / "fifo", "a FIFO")):
        with pytest.raises(ArchIOError, match=f"is {kind}; expected a regular file"):
            check_input_file(path, "data")
    with pytest.raises(ArchIOError, match="is a folder, not a file"):
        check_input_file(tmp_path)
    with pytest.raises(ArchIOError, match="does not exist"):
        check_input_file(tmp_path / "nothing")


def _npy_with_header(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue() + b"\0" * 64


def test_a_header_claiming_2_to_the_40_rows_is_refused_with_figures(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    path.write_bytes(_npy_with_header((2**40, 4)))
    with pytest.raises(ArchIOError) as caught:
        load_npy(path)
    message = str(caught.value)
    assert "claims shape (1099511627776, 4) of float32 (16.0 TiB)" in message
    assert "the file holds only 64 bytes" in message


def test_npz_members_are_checked_from_their_headers(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", _npy_with_header((2**40, 8, 8, 1)))
        archive.writestr("y.npy", _npy_with_header((10,)))
    with pytest.raises(
        ArchIOError, match=r"`x`: the header claims shape \(1099511627776, 8, 8, 1\)"
    ):
        load_npz(path)


def test_a_truncated_npz_is_an_error_not_a_badzipfile(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((100, 8, 8, 1), np.float32), y=np.zeros(100, np.int64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchIOError, match=r"cannot read data `.*d\.npz` as \.npz: .*") as caught:
        load_npz(path)
    assert caught.value.help == "the file is truncated or not an .npz archive"


def test_an_npz_is_not_an_npy(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", x=np.zeros(3))
    with pytest.raises(
        ArchIOError, match=r"is an \.npz archive; expected one array in a \.npy file"
    ):
        load_npy(tmp_path / "x.npz")


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ArchIOError, match="holds Python objects"):
        load_npy(tmp_path / "o.npy")


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (0, 1023, 1536, 3 * 2**30)] == [
        "0 bytes",
        "1,023 bytes",
        "1.5 KiB",
        "3.0 GiB",
    ]
