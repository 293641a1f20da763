"""Hostile inputs at every entry point: does archdsl hold? (issue 8)

    python bench/hostile.py                  # the whole corpus (over 1,000 cases), 2 at a time
    python bench/hostile.py --only imports --only weights -j 1 -v

Every case runs in its own process under a timeout: a child forked from this one (which
has imported only the front end, never JAX, so forking is safe) that calls
`archdsl.cli.main(argv)` or a public API function, or, for a few, a fresh
`python -m archdsl`. Entry points: each subcommand (`check`, `compile`, `graph`, `fmt`,
`run`, `train`, `fuzz`) and the public API; inputs: spec text, imports, `--arg`, weights,
checkpoints, data, exported models, output paths, file-size limits (`RLIMIT_FSIZE`, as
`ulimit -f`) and SIGKILL in the middle of writes.

A case is *held* when archdsl does what a trusted compiler does: a bad input gives exit 1
or 2 and an `error:` message (never a Python traceback), within the timeout; files it
must not touch are byte-identical afterwards (after a kill: the old file or the complete
new one, never a part); no temporary file is left behind (after a kill: once the next
write has run); and no output quotes a file outside the project or the environment.
Otherwise it counts as one of: traceback (or death by a signal), hang, files lost,
accepted (a bad input taken in silence), leak (a secret quoted), litter (temp files).
Exit status 1 unless every case held.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archdsl.cli.main import main as cli_main  # noqa: E402
from archdsl.errors import ArchError  # noqa: E402

SECRET = "HOSTILE-SECRET-5f1c"
"""Put in the children's environment and in a file outside the project: never printed."""
TEMP_MARK = ".archdsl-tmp"

TINY = """\
network Tiny(classes = 10) {
    input 8x8x1
    conv 4 3x3 same as conv -> batchnorm as bn -> relu
    flatten
    dense classes as fc
}
"""


@dataclass
class Case:
    """One hostile input and what holding it means."""

    kind: str
    name: str
    argv: list[str] | None = None
    """Arguments of `archdsl` (run in a forked child), or None for `api`."""
    api: str | None = None
    """Python source run in the child; it may raise only `ArchError`."""
    expect: str = "error"
    """`error`: must be refused; `any`: accepted or refused, cleanly."""
    protect: dict[str, str | tuple[str, ...]] = field(default_factory=dict)
    """path -> sha256 (or allowed sha256s) it must have afterwards."""
    fsize: int | None = None
    kill_after: float | None = None
    """SIGKILL the child this many seconds after it starts."""
    follow: list[str] | None = None
    """After a kill: argv of the next run, which must clean the temporary files."""
    fresh: bool = False
    """Run `python -m archdsl` in a new interpreter rather than a forked child."""
    timeout: float = 60.0
    watch: tuple[str, ...] = ()
    """Folders that must hold no temporary file afterwards."""
    protect_on_success: bool = True
    """False: `protect` holds only when the command fails (exit != 0)."""


@dataclass
class Outcome:
    case: Case
    verdict: str
    code: int | None
    seconds: float
    detail: str = ""


# fixtures ---------------------------------------------------------------------------------
def sha(path: str | Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "missing"


_SETUP = r"""
import json, sys
from pathlib import Path
import jax, numpy as np
from archdsl.frontend import build_graph_text
from archdsl.compiler import compile_graph_model
from archdsl.backend.export import export_model
from archdsl.backend.weights import save_weights
from archdsl.train.config import TrainConfig
from archdsl.train.data import load_data, Split
from archdsl.train.loop import train

w = Path(sys.argv[1])
graph = build_graph_text((w / "tiny.arch").read_text(), str(w / "tiny.arch"))
model = compile_graph_model(graph)
export_model(model, w / "model.jaxexport")
params, state = model.init(jax.random.key(0))
save_weights(w / "weights.safetensors", params, state)
import ml_dtypes
for code, dtype in (("bf16", ml_dtypes.bfloat16), ("f16", np.float16), ("f8", ml_dtypes.float8_e4m3fn), ("f64", np.float64)):
    cast = jax.tree.map(lambda a: np.asarray(a).astype(dtype), (params, state))
    save_weights(w / f"weights_{code}.safetensors", *cast)
rng = np.random.default_rng(0)
np.savez(w / "data.npz", x=rng.random((96, 8, 8, 1), dtype=np.float32), y=rng.integers(0, 10, 96))
np.save(w / "x.npy", rng.random((4, 8, 8, 1), dtype=np.float32))
data = load_data(w / "data.npz", (8, 8, 1), 10)
train(graph, data, TrainConfig(epochs=1, batch_size=16), checkpoint_dir=w / "run")
big = {f"t{i}": {"kernel": np.full((1024, 1024), i, np.float32)} for i in range(48)}
np.savez(w / "big_params.npz", **{k: v["kernel"] for k, v in big.items()})
"""


def make_workspace(folder: Path) -> None:
    """Specs, an exported model, weights, data and a checkpoint of `Tiny`."""
    (folder / "project").mkdir()
    (folder / "outside").mkdir()
    (folder / "outside" / "secret.arch").write_text(f"network S {{ input {SECRET} }}\n")
    (folder / "outside" / "secret.txt").write_text(f"{SECRET}\nsecond line\n")
    (folder / "tiny.arch").write_text(TINY)
    (folder / "out").mkdir()
    (folder / "ro").mkdir()
    (folder / "a_file").write_text("not a folder\n")
    os.mkfifo(folder / "fifo")
    os.mkfifo(folder / "fifo.npz")
    os.mkfifo(folder / "fifo.arch")
    body = "".join(f"    conv 8 3x3 same as c{i}\n" for i in range(20000))
    (folder / "big.arch").write_text(f"network   Big {{\n    input 32x32x3\n{body}}}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", _SETUP, str(folder)], check=True, env=env, cwd=folder)


# the corpus --------------------------------------------------------------------------------
def corpus(w: Path, seed: int) -> list[Case]:
    """Every case, built from the workspace `w`."""
    rng = random.Random(seed)
    cases: list[Case] = []
    cases += spec_cases(w, rng)
    cases += import_cases(w)
    cases += arg_cases(w)
    cases += weights_cases(w)
    cases += checkpoint_cases(w)
    cases += data_cases(w)
    cases += export_cases(w, rng)
    cases += output_cases(w)
    cases += fsize_cases(w)
    cases += kill_cases(w, rng)
    cases += api_cases(w)
    cases += fuzz_cases(w)
    return cases


def _file(w: Path, name: str, data: str | bytes) -> str:
    path = w / "cases" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8", errors="surrogateescape")
    else:
        path.write_bytes(data)
    return str(path)


HOSTILE_SPECS: dict[str, tuple[str | bytes, str]] = {
    # name: (text, expectation)
    "empty repeat of 2**31-1": ("network N {\n input 8x8x1\n repeat 2147483647 { }\n}\n", "any"),
    "repeat of empty blocks": (
        "network N {\n input 8x8x1\n repeat 2147483647 { repeat 2147483647 { } }\n}\n",
        "any",
    ),
    "huge repeat with a body": (
        "network N {\n input 8x8x1\n repeat 2000000000 { relu }\n}\n",
        "error",
    ),
    "repeat 10**30": (
        "network N {\n input 8x8x1\n repeat 1000000000000000000000000000000 { relu }\n}\n",
        "error",
    ),
    "negative repeat": ("network N {\n input 8x8x1\n repeat -1 { relu }\n}\n", "error"),
    "duplicate params": ("network N(a = 1, a = 2) {\n input 8x8x1\n dense a\n}\n", "error"),
    "eps 1e999": ("network N {\n input 8x8x1\n batchnorm eps = 1e999\n}\n", "error"),
    "eps nan": ("network N {\n input 8x8x1\n batchnorm eps = nan\n}\n", "error"),
    "negative aux weight": (
        "network N {\n input 8x8x1\n conv 4 3x3 as c\n aux a weight = -0.5 { flatten -> dense 10 }\n flatten -> dense 10\n}\n",
        "error",
    ),
    "aux weight 1e999": (
        "network N {\n input 8x8x1\n conv 4 3x3 as c\n aux a weight = 1e999 { flatten -> dense 10 }\n flatten -> dense 10\n}\n",
        "error",
    ),
    "use outside range": (
        "network Base(c = 4 in 1..8) {\n input 8x8x1\n conv c 3x3\n}\nnetwork N {\n use Base(c = 99)\n}\n",
        "error",
    ),
    "block shadows a layer": (
        "block conv(x = 1) {\n relu\n}\nnetwork N {\n input 8x8x1\n conv 4 3x3\n}\n",
        "error",
    ),
    "from f inside repeat": (
        "network N {\n input 8x8x1\n repeat 3 { conv 4 3x3 same as f }\n concat { branch { from f } branch { relu } }\n}\n",
        "error",
    ),
    "tap from aux": (
        "network N {\n input 8x8x1\n conv 4 3x3 as c\n aux a { conv 4 1x1 as inner -> flatten -> dense 10 }\n from inner -> flatten -> dense 10\n}\n",
        "error",
    ),
    "frozen upto later": (
        "network N {\n input 8x8x1\n frozen upto d\n conv 4 3x3 as c\n flatten -> dense 10 as d\n}\n",
        "any",
    ),
    "use recursion": ("network N {\n use N\n}\n", "error"),
    "mutual use recursion": ("network A {\n use B\n}\nnetwork B {\n use A\n}\n", "error"),
    "BOM": ("\ufeffnetwork N {\n input 8x8x1\n bogus 3\n}\n", "error"),
    "form feed in comment": ("# a\fcomment\nnetwork N {\n input 8x8x1\n bogus 3\n}\n", "error"),
    "lone CR in comment": ("# a\rcomment\nnetwork N {\n input 8x8x1\n bogus 3\n}\n", "error"),
    "NUL byte": ("network N {\n input 8x8x1\0\n}\n", "error"),
    "ESC sequence": ("network N {\n input 8x8x1\n \x1b[31mrelu\n}\n", "error"),
    "invalid UTF-8": (b"network N {\n input 8x8x1\n \xff\xfe relu\n}\n", "error"),
    "UTF-16": ("network N { input 8x8x1 }\n".encode("utf-16"), "error"),
    "deep braces": ("network N {\n input 8x8x1\n" + "block {" * 5000 + "}" * 5000 + "\n}\n", "any"),
    "deep parens": (
        "network N(a = " + "(" * 50000 + "1" + ")" * 50000 + ") {\n input 8x8x1\n}\n",
        "any",
    ),
    "deep unary minus": ("network N(a = " + "-" * 100000 + "1) {\n input 8x8x1\n}\n", "any"),
    "megabyte line": ("network N {\n input 8x8x1\n relu " + "x" * 1_000_000 + "\n}\n", "error"),
    "huge input shape": ("network N {\n input 100000x100000x100000\n conv 4 3x3\n}\n", "any"),
    "zero input": ("network N {\n input 0x0x0\n conv 4 3x3\n}\n", "error"),
    "5000-digit number": ("network N {\n input 8x8x1\n dense " + "9" * 5000 + "\n}\n", "error"),
    "concat one-liner": (
        "network N {\n input 8x8x1\n concat { branch { relu } branch { relu } }\n}\n",
        "any",
    ),
    "8x8xclasses": ("network N(classes = 3) {\n input 8x8xclasses\n}\n", "any"),
    "activation = relu": (
        "network N {\n input 8x8x1\n conv 16 3x3 activation = relu\n}\n",
        "error",
    ),
    "residual stride 2 valid": (
        "network N {\n input 9x9x4\n residual { conv 4 3x3 stride 2 }\n}\n",
        "any",
    ),
    "20k layers": ("network N {\n input 8x8x1\n" + " relu\n" * 20000 + "}\n", "any"),
    "many networks": ("".join(f"network N{i} {{\n input 8x8x1\n}}\n" for i in range(5000)), "any"),
    "only comment": ("# nothing\n", "any"),
    "empty file": ("", "any"),
}


def spec_cases(w: Path, rng: random.Random) -> list[Case]:
    """Hand-written hostile specs, and mutations of every spec in `specs/`."""
    cases = []
    for name, (text, expect) in HOSTILE_SPECS.items():
        path = _file(w, f"spec/{len(cases)}.arch", text)
        cases.append(Case("spec", name, ["check", path], expect=expect, timeout=30))
        cases.append(
            Case(
                "spec",
                f"{name} (compile --json)",
                ["compile", "--json", path],
                expect=expect,
                timeout=30,
            )
        )
    specs = sorted((ROOT / "specs").glob("*.arch"))
    tokens = [
        "{",
        "}",
        "(",
        ")",
        "->",
        "=",
        ":",
        "x",
        "0",
        "-1",
        "1e999",
        "nan",
        "repeat 99999999",
        'import "/etc/passwd"',
        "use",
        "from",
        "as",
        "aux",
        "frozen upto",
        "\0",
        "\ufeff",
        "concat",
        "residual",
        "branch",
        "block",
        "network",
        "8x8x",
        "\r",
        "\f",
        "#",
        '"',
        "9" * 400,
    ]
    for spec in specs:
        text = spec.read_text()
        for i in range(20):
            mutated = _mutate(text, rng, tokens)
            path = _file(w, f"mut/{spec.stem}.{i}.arch", mutated)
            cases.append(Case("spec", f"mutated {spec.stem} #{i}", ["check", path], expect="any"))
    return cases


def _mutate(text: str, rng: random.Random, tokens: Sequence[str]) -> str:
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(text) + 1)
        op = rng.randrange(5)
        if op == 0:
            text = text[:at] + text[at + rng.randint(1, 20) :]
        elif op == 1:
            text = text[:at] + rng.choice(tokens) + text[at:]
        elif op == 2:
            lines = text.splitlines(keepends=True)
            j = rng.randrange(len(lines))
            lines.insert(j, lines[rng.randrange(len(lines))])
            text = "".join(lines)
        elif op == 3:
            text = text[:at]
        else:
            text = text[:at] + chr(rng.randrange(1, 0x3000)) + text[at:]
    return text


def import_cases(w: Path) -> list[Case]:
    """Imports that leave the project, read devices, loop, or quote non-spec files."""
    project = w / "project"
    (project / "base.arch").write_text("network Base {\n input 8x8x1\n relu\n}\n")
    links = {
        "link_passwd.arch": "/etc/passwd",
        "link_secret.arch": str(w / "outside" / "secret.arch"),
        "link_environ.arch": "/proc/self/environ",
        "link_loop.arch": str(project / "link_loop.arch"),
    }
    for name, target in links.items():
        with contextlib.suppress(FileExistsError):
            (project / name).symlink_to(target)
    (project / "sub").mkdir(exist_ok=True)
    (project / "cycle_a.arch").write_text('import "cycle_b.arch"\nnetwork A {\n input 8x8x1\n}\n')
    (project / "cycle_b.arch").write_text('import "cycle_a.arch"\nnetwork B {\n input 8x8x1\n}\n')
    (project / "self.arch").write_text('import "self.arch"\nnetwork S {\n input 8x8x1\n}\n')
    (project / "binary.arch").write_bytes(b"\x00\xff" * 100)
    with contextlib.suppress(FileExistsError):
        os.mkfifo(project / "fifo.arch")
    targets = [
        "../../../../../../etc/passwd",
        "/etc/passwd",
        "/etc/shadow",
        "/proc/self/environ",
        "/proc/self/cmdline",
        "/dev/zero",
        "/dev/urandom",
        "/dev/stdin",
        str(w / "outside" / "secret.arch"),
        str(w / "outside" / "secret.txt"),
        "../outside/secret.arch",
        "../outside/secret.txt",
        "sub/../../outside/secret.arch",
        "link_passwd.arch",
        "link_secret.arch",
        "link_environ.arch",
        "link_loop.arch",
        "fifo.arch",
        "sub",
        ".",
        "",
        "nonexistent.arch",
        "base.txt",
        "binary.arch",
        "cycle_a.arch",
        "self.arch",
        "base.arch\0.txt",
        "a" * 5000 + ".arch",
        "~/.bashrc",
        "$HOME/x.arch",
        "%2e%2e/outside/secret.arch",
        "file:///etc/passwd",
        "http://example.com/x.arch",
        "\\\\server\\share\\x.arch",
        "C:\\Windows\\win.ini",
    ]
    cases = []
    for i, target in enumerate(targets):
        quoted = json.dumps(target)
        path = project / f"imp{i}.arch"
        path.write_text(f"import {quoted}\nnetwork N {{\n input 8x8x1\n relu\n}}\n")
        cases.append(Case("imports", f"import {target[:40]!r}", ["check", str(path)]))
        cases.append(Case("imports", f"import {target[:40]!r} (graph)", ["graph", str(path)]))
    for name in ("cycle_a.arch", "self.arch"):
        cases.append(Case("imports", f"{name} directly", ["check", str(project / name)]))
    return cases


ARG_VALUES = [
    "classes=5 -> relu",
    "classes=",
    "=5",
    "classes",
    "classes=1e999",
    "classes=-1",
    "classes=0",
    "classes=99999999999999999999",
    "classes=nan",
    "classes=inf",
    "classes=10x10",
    "classes=relu",
    'classes="ten"',
    "classes={",
    "classes=}",
    "classes=(",
    "classes=5\n6",
    "classes=5 # c",  # a comment: fine
    "classes=\0",
    "classes=\x1b[31m5",
    "classes=" + "9" * 5000,
    "classes=" + "(" * 5000,
    "unknown=3",
    "classes=3.5",
    "classes=--1",
    "classes=5 5",
    "class es=5",
    "1classes=5",
    'classes=import "/etc/passwd"',
    "classes=" + "-" * 50000 + "1",
    "clässes=5",
    "classes=\ufeff5",
]


def arg_cases(w: Path) -> list[Case]:
    tiny = str(w / "tiny.arch")
    cases = []
    for value in ARG_VALUES:
        expect = "any" if value in ("classes=5 # c", "classes=--1") else "error"
        cases.append(
            Case("arg", f"--arg {value[:40]!r}", ["check", tiny, "--arg", value], expect=expect)
        )
        cases.append(
            Case(
                "arg",
                f"--arg {value[:40]!r} (compile)",
                ["compile", tiny, "--arg", value],
                expect=expect,
            )
        )
    for network in ("Nope", "", "Tiny\0", "x" * 10000):
        cases.append(
            Case("arg", f"--network {network[:20]!r}", ["compile", tiny, "--network", network])
        )
    return cases


def _safetensors(header: object, body: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def weights_blobs(w: Path) -> dict[str, bytes]:
    """Damaged, forged and foreign weights files."""
    good = (w / "weights.safetensors").read_bytes()
    size = int.from_bytes(good[:8], "little")
    header = json.loads(good[8 : 8 + size])
    body = good[8 + size :]

    def edit(change: Callable[[dict], None]) -> bytes:
        h = json.loads(json.dumps(header))
        change(h)
        return _safetensors(h, body)

    first = next(k for k in header if k != "__metadata__")
    blobs = {
        "empty": b"",
        "7 bytes": b"\x01" * 7,
        "header 2**40": struct.pack("<Q", 2**40) + b"{}",
        "header 2**64-1": b"\xff" * 8 + b"{}",
        "not JSON": struct.pack("<Q", 4) + b"nope",
        "JSON list": _safetensors([1, 2]),
        "truncated half": good[: len(good) // 2],
        "truncated body by 1": good[:-1],
        "one byte extra": good + b"\0",
        "metadata not strings": edit(lambda h: h.update({"__metadata__": {"a": 1}})),
        "state not JSON": edit(lambda h: h["__metadata__"].update({"archdsl.state": "[oops"})),
        "state a number": edit(lambda h: h["__metadata__"].update({"archdsl.state": "5"})),
        "state of numbers": edit(lambda h: h["__metadata__"].update({"archdsl.state": "[1, 2]"})),
        "bfloat16": edit(
            lambda h: h[first].update(
                dtype="BF16", shape=[*h[first]["shape"][:-1], h[first]["shape"][-1] * 2]
            )
        ),
        "float8": edit(
            lambda h: h[first].update(
                dtype="F8_E4M3", shape=[*h[first]["shape"][:-1], h[first]["shape"][-1] * 4]
            )
        ),
        "float16": edit(
            lambda h: h[first].update(
                dtype="F16", shape=[*h[first]["shape"][:-1], h[first]["shape"][-1] * 2]
            )
        ),
        "int64": edit(
            lambda h: h[first].update(
                dtype="I64",
                shape=[*h[first]["shape"][:-1], h[first]["shape"][-1] // 2]
                if h[first]["shape"][-1] % 2 == 0
                else h[first]["shape"],
            )
        ),
        "unknown dtype": edit(lambda h: h[first].update(dtype="F128")),
        "negative shape": edit(lambda h: h[first].update(shape=[-1])),
        "huge shape": edit(lambda h: h[first].update(shape=[2**40, 2**20])),
        "offsets outside": edit(lambda h: h[first].update(data_offsets=[0, 10**12])),
        "offsets reversed": edit(lambda h: h[first].update(data_offsets=[8, 0])),
        "offsets strings": edit(lambda h: h[first].update(data_offsets=["0", "8"])),
        "entry a list": edit(lambda h: h.update({first: [1, 2]})),
        "no dtype": edit(lambda h: h[first].pop("dtype")),
        "name without dot": edit(lambda h: h.update({"nodot": h.pop(first)})),
        "renamed tensor": edit(lambda h: h.update({first + "x": h.pop(first)})),
        "a zip": (w / "data.npz").read_bytes(),
        "an exported model": (w / "model.jaxexport").read_bytes(),
        "random bytes": random.Random(1).randbytes(5000),
    }
    return blobs


def weights_cases(w: Path) -> list[Case]:
    model, x, data = str(w / "model.jaxexport"), str(w / "x.npy"), str(w / "data.npz")
    tiny = str(w / "tiny.arch")
    cases = []
    paths = {
        name: _file(w, f"weights/{i}.safetensors", blob)
        for i, (name, blob) in enumerate(weights_blobs(w).items())
    }
    paths |= {
        "/dev/zero": "/dev/zero",
        "a FIFO": str(w / "fifo"),
        "a folder": str(w / "out"),
        "missing": str(w / "nope.safetensors"),
        "all bfloat16": str(w / "weights_bf16.safetensors"),
        "all float16": str(w / "weights_f16.safetensors"),
        "all float8": str(w / "weights_f8.safetensors"),
        "all float64": str(w / "weights_f64.safetensors"),
    }
    # A header edit that changes a tensor's shape is a resized layer to `--init`: it is
    # initialised afresh and reported, which is the documented rule, not an error.
    resized = ("bfloat16", "float8", "float16", "int64", "renamed tensor", "name without dot")
    for name, path in paths.items():
        cases.append(
            Case(
                "weights",
                f"run --weights {name}",
                ["run", model, "--weights", path, "--input", x],
                timeout=120,
            )
        )
        cases.append(
            Case(
                "weights",
                f"train --init {name}",
                [
                    "train",
                    tiny,
                    "--data",
                    data,
                    "--init",
                    path,
                    "--no-checkpoints",
                    "--epochs",
                    "1",
                ],
                expect="any" if name in resized else "error",
                timeout=120,
            )
        )
    return cases


def checkpoint_blobs(w: Path) -> dict[str, bytes]:
    """Forged and damaged checkpoints, edited from a real one."""
    good = (w / "run" / "checkpoint.safetensors").read_bytes()
    size = int.from_bytes(good[:8], "little")
    header = json.loads(good[8 : 8 + size])
    body = good[8 + size :]
    meta_key = "archdsl.train.checkpoint"

    def info(change: Callable[[dict], None]) -> bytes:
        h = json.loads(json.dumps(header))
        i = json.loads(h["__metadata__"][meta_key])
        change(i)
        h["__metadata__"][meta_key] = json.dumps(i)
        return _safetensors(h, body)

    def raw(change: Callable[[dict], None]) -> bytes:
        h = json.loads(json.dumps(header))
        change(h)
        return _safetensors(h, body)

    rng_name = "rng"
    return {
        "bad JSON": raw(lambda h: h["__metadata__"].update({meta_key: "{oops"})),
        "JSON list": raw(lambda h: h["__metadata__"].update({meta_key: "[]"})),
        "no format": raw(lambda h: h["__metadata__"].pop("archdsl.format")),
        "no step": info(lambda i: i.pop("step")),
        "no epoch": info(lambda i: i.pop("epoch")),
        "no position": info(lambda i: i.pop("position")),
        "no optimizer_paths": info(lambda i: i.pop("optimizer_paths")),
        "step -1": info(lambda i: i.update(step=-1)),
        "epoch -3": info(lambda i: i.update(epoch=-3)),
        "position -1": info(lambda i: i.update(position=-1)),
        "step 10**40": info(lambda i: i.update(step=10**40)),
        "epoch 10**9": info(lambda i: i.update(epoch=10**9)),
        "position 10**9": info(lambda i: i.update(position=10**9)),
        "step 1.5": info(lambda i: i.update(step=1.5)),
        "epoch string": info(lambda i: i.update(epoch="1")),
        "step inconsistent": info(lambda i: i.update(step=i["step"] + 3)),
        "history missing an epoch": info(lambda i: i.update(history=[])),
        "history of junk": info(lambda i: i.update(history=[{"epoch": "x"}])),
        "partial NaN": info(lambda i: i.update(partial={"loss": float("nan")})),
        "config a list": info(lambda i: i.update(config=[1])),
        "config other optimizer": info(lambda i: i["config"].update(optimizer="lbfgs")),
        "config batch 0": info(lambda i: i["config"].update(batch_size=0)),
        "config seed -1": info(lambda i: i["config"].update(seed=-1)),
        "other network": info(lambda i: i.update(network="Other")),
        "optimizer paths shuffled": info(
            lambda i: i.update(optimizer_paths=i["optimizer_paths"][::-1])
        ),
        "no rng": raw(lambda h: h.pop(rng_name)),
        "rng float": raw(lambda h: h[rng_name].update(dtype="F32")),
        "rng shape 4": raw(lambda h: h[rng_name].update(dtype="U16", shape=[4])),
        "truncated": good[: len(good) // 3],
        "plain weights": (w / "weights.safetensors").read_bytes(),
        "empty": b"",
    }


def checkpoint_cases(w: Path) -> list[Case]:
    tiny, data = str(w / "tiny.arch"), str(w / "data.npz")
    cases = []
    for i, (name, blob) in enumerate(checkpoint_blobs(w).items()):
        path = _file(w, f"ckpt/{i}/checkpoint.safetensors", blob)
        argv = [
            "train",
            tiny,
            "--data",
            data,
            "--resume",
            path,
            "--epochs",
            "2",
            "--checkpoint-dir",
            str(Path(path).parent),
        ]
        cases.append(
            Case("checkpoint", f"--resume {name}", argv, timeout=150, protect={path: sha(path)})
        )
    for name, path in (
        ("/dev/zero", "/dev/zero"),
        ("FIFO", str(w / "fifo")),
        ("folder", str(w / "out")),
    ):
        cases.append(
            Case(
                "checkpoint",
                f"--resume {name}",
                ["train", tiny, "--data", data, "--resume", path, "--no-checkpoints"],
                timeout=120,
            )
        )
    seeds = ["-1", str(2**63), str(2**64), "1e3", "0x10"]
    for seed in seeds:
        cases.append(
            Case(
                "checkpoint",
                f"--seed {seed}",
                ["train", tiny, "--data", data, "--seed", seed, "--no-checkpoints"],
                timeout=120,
            )
        )
    for option, value in (
        ("--epochs", "0"),
        ("--epochs", "-1"),
        ("--batch-size", "0"),
        ("--batch-size", "100000"),
        ("--lr", "nan"),
        ("--lr", "-1"),
        ("--lr", "inf"),
        ("--momentum", "2"),
        ("--weight-decay", "-1"),
        ("--test-fraction", "0"),
        ("--test-fraction", "1.5"),
        ("--devices", "0"),
        ("--devices", "64"),
    ):
        cases.append(
            Case(
                "checkpoint",
                f"{option} {value}",
                ["train", tiny, "--data", data, option, value, "--no-checkpoints"],
                timeout=120,
            )
        )
    # resuming a finished run asks for nothing more: it must write nowhere
    fresh = w / "cases" / "never-created"
    cases.append(
        Case(
            "checkpoint",
            "--resume with nothing to do",
            [
                "train",
                tiny,
                "--data",
                data,
                "--resume",
                str(w / "run" / "checkpoint.safetensors"),
                "--epochs",
                "1",
                "--checkpoint-dir",
                str(fresh),
            ],
            expect="any",
            protect={
                str(fresh): "missing",
                str(w / "run" / "checkpoint.safetensors"): sha(
                    w / "run" / "checkpoint.safetensors"
                ),
            },
            timeout=150,
        )
    )
    return cases


def _npy(shape: tuple[int, ...], descr: str = "<f4", fill: int = 64) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue() + b"\0" * fill


def _npz(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name + ".npy", data)
    return buffer.getvalue()


def data_blobs(w: Path) -> dict[str, bytes]:
    import io

    import numpy as np

    def npz(**arrays: object) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    x = np.zeros((20, 8, 8, 1), np.float32)
    y = np.arange(20) % 10
    good = (w / "data.npz").read_bytes()
    return {
        "header 2**40 rows": _npz({"x": _npy((2**40, 8, 8, 1)), "y": _npy((10,), "<i8")}),
        "header 2**62 elements": _npz({"x": _npy((2**31, 2**31)), "y": _npy((10,), "<i8")}),
        "y header huge": _npz({"x": _npy((2, 8, 8, 1), fill=512), "y": _npy((2**40,), "<i8")}),
        "object array": npz(x=np.array([object()] * 3, dtype=object), y=y)
        if False
        else _npz({"x": _npy((3,), "|O"), "y": _npy((3,), "<i8")}),
        "bad npy magic": _npz({"x": b"not an array", "y": _npy((3,), "<i8")}),
        "truncated zip": good[: len(good) // 2],
        "truncated last byte": good[:-1],
        "empty file": b"",
        "zip with nothing": _npz({}),
        "no y": npz(x=x),
        "x strings": npz(x=np.array(["a"] * 20), y=y),
        "x complex": npz(x=x.astype(np.complex64), y=y),
        "x wrong shape": npz(x=np.zeros((20, 9, 9, 1), np.float32), y=y),
        "x NaN": npz(x=np.full((20, 8, 8, 1), np.nan, np.float32), y=y),
        "x inf": npz(x=np.full((20, 8, 8, 1), np.inf, np.float32), y=y),
        "y out of range": npz(x=x, y=y + 100),
        "y negative": npz(x=x, y=y - 5),
        "y float fractions": npz(x=x, y=y + 0.5),
        "y one-hot": npz(x=x, y=np.eye(10)[y]),
        "lengths differ": npz(x=x, y=y[:5]),
        "empty": npz(x=np.zeros((0, 8, 8, 1), np.float32), y=np.zeros(0, np.int64)),
        "one example": npz(x=x[:1], y=y[:1]),
        "only x_test": npz(x=x, y=y, x_test=x),
        "x_test wrong": npz(x=x, y=y, x_test=x[:, :4], y_test=y),
        "random bytes": random.Random(2).randbytes(3000),
    }


def data_cases(w: Path) -> list[Case]:
    tiny = str(w / "tiny.arch")
    cases = []
    for i, (name, blob) in enumerate(data_blobs(w).items()):
        path = _file(w, f"data/{i}.npz", blob)
        cases.append(
            Case(
                "data",
                f"--data {name}",
                ["train", tiny, "--data", path, "--no-checkpoints", "--epochs", "1"],
                timeout=120,
            )
        )
    for name, path in (
        ("FIFO", str(w / "fifo.npz")),
        ("/dev/zero", "/dev/zero"),
        ("folder", str(w / "out")),
        ("missing", str(w / "nope.npz")),
        ("not npz", str(w / "tiny.arch")),
        ("folder.npz", _dir(w, "dir.npz")),
    ):
        cases.append(
            Case(
                "data",
                f"--data {name}",
                ["train", tiny, "--data", path, "--no-checkpoints", "--epochs", "1"],
                timeout=120,
            )
        )
    huge = _file(
        w,
        "data/huge_input.arch",
        "network Huge {\n input 4096x4096x3\n globalavgpool\n dense 10\n}\n",
    )
    cases.append(
        Case(
            "data",
            "--data digits at 4096x4096x3",
            ["train", huge, "--data", "digits", "--no-checkpoints"],
            timeout=120,
        )
    )
    huger = _file(
        w,
        "data/huger_input.arch",
        "network Huge {\n input 65536x65536x3\n globalavgpool\n dense 10\n}\n",
    )
    cases.append(
        Case(
            "data",
            "--data digits at 65536x65536x3",
            ["train", huger, "--data", "digits", "--no-checkpoints"],
            timeout=120,
        )
    )
    bad_shape = _file(w, "data/rank2.arch", "network R {\n input 8x8\n flatten\n dense 10\n}\n")
    cases.append(
        Case(
            "data",
            "--data digits at rank 2",
            ["train", bad_shape, "--data", "digits", "--no-checkpoints"],
            timeout=120,
        )
    )
    return cases


def _dir(w: Path, name: str) -> str:
    path = w / "cases" / name
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def export_cases(w: Path, rng: random.Random) -> list[Case]:
    weights, x = str(w / "weights.safetensors"), str(w / "x.npy")
    good = (w / "model.jaxexport").read_bytes()
    blobs = {
        "empty": b"",
        "junk": b"definitely not a flatbuffer",
        "truncated half": good[: len(good) // 2],
        "truncated 16": good[:16],
        "weights file": (w / "weights.safetensors").read_bytes(),
        "npz": (w / "data.npz").read_bytes(),
    }
    for i in range(24):
        flipped = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        blobs[f"bit flips #{i}"] = bytes(flipped)
    cases = []
    for i, (name, blob) in enumerate(blobs.items()):
        path = _file(w, f"export/{i}.jaxexport", blob)
        expect = "any" if name.startswith("bit flips") else "error"
        cases.append(
            Case(
                "export",
                f"run model {name}",
                ["run", path, "--weights", weights, "--input", x],
                expect=expect,
                timeout=120,
            )
        )
    for name, path in (
        ("/dev/zero", "/dev/zero"),
        ("FIFO", str(w / "fifo")),
        ("folder", str(w / "out")),
        ("missing", str(w / "nope")),
    ):
        cases.append(
            Case(
                "export",
                f"run model {name}",
                ["run", path, "--weights", weights, "--input", x],
                timeout=120,
            )
        )
    inputs = {
        "an npz": (w / "data.npz").read_bytes(),
        "empty batch": _npy((0, 8, 8, 1), fill=0),
        "header 2**40": _npy((2**40, 8, 8, 1)),
        "complex": _npy((1, 8, 8, 1), "<c8", fill=512),
        "object": _npy((2,), "|O"),
        "strings": _npy((1, 8, 8, 1), "<U3", fill=768),
        "truncated": _npy((4, 8, 8, 1), fill=10),
        "no header": b"\x93NUMPY\x01\x00",
        "scalar": _npy((), fill=4),
        "one example unbatched": _npy((8, 8, 1), fill=256),
        "wrong shape": _npy((2, 9, 9, 1), fill=648),
        "empty file": b"",
    }
    model = str(w / "model.jaxexport")
    for i, (name, blob) in enumerate(inputs.items()):
        path = _file(w, f"inputs/{i}.npy", blob)
        cases.append(
            Case(
                "export",
                f"run --input {name}",
                ["run", model, "--weights", weights, "--input", path],
                timeout=120,
            )
        )
    for name, path in (
        ("/dev/zero", "/dev/zero"),
        ("FIFO", str(w / "fifo")),
        ("folder", str(w / "out")),
    ):
        cases.append(
            Case(
                "export",
                f"run --input {name}",
                ["run", model, "--weights", weights, "--input", path],
                timeout=120,
            )
        )
    return cases


def output_cases(w: Path) -> list[Case]:
    """Every output option against unusable paths."""
    tiny, model = str(w / "tiny.arch"), str(w / "model.jaxexport")
    weights, x, data = str(w / "weights.safetensors"), str(w / "x.npy"), str(w / "data.npz")
    for suffix in (".jaxexport", ".dot", ".svg", ".npy"):
        (w / "out" / f"folder{suffix}").mkdir(exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkfifo(w / "out" / f"fifo{suffix}")
    long_name = "n" * 300

    def targets(suffix: str) -> dict[str, tuple[str, str]]:
        return {
            "a folder": (str(w / "out" / f"folder{suffix}"), "error"),
            "missing folder": (str(w / "no" / "such" / f"f{suffix}"), "error"),
            "under a file": (str(w / "a_file" / f"f{suffix}"), "error"),
            "/dev/full": ("/dev/full", "error"),
            "name too long": (str(w / "out" / (long_name + suffix)), "error"),
            "long folder name": (str(w / "out" / long_name / f"f{suffix}"), "error"),
            "FIFO without reader": (str(w / "out" / f"fifo{suffix}"), "error"),
            "/proc/self/mem": ("/proc/self/mem", "error"),
            "/dev/null": ("/dev/null", "any"),
            "/": ("/", "error"),
            "NUL in name": (str(w / "out" / f"a\0b{suffix}"), "error"),
        }

    commands = {
        "compile -o": (".jaxexport", lambda p: ["compile", tiny, "-o", p]),
        "graph -o .dot": (".dot", lambda p: ["graph", tiny, "-o", p]),
        "graph -o .svg": (".svg", lambda p: ["graph", tiny, "-o", p]),
        "run -o": (".npy", lambda p: ["run", model, "--weights", weights, "--input", x, "-o", p]),
    }
    cases = []
    for command, (suffix, make) in commands.items():
        for name, (path, expect) in targets(suffix).items():
            if command.startswith("graph") and path in (
                "/dev/null",
                "/dev/full",
                "/proc/self/mem",
                "/",
            ):
                expect = "error"  # no extension to tell the format by
            if command == "graph -o .svg" and name == "FIFO without reader":
                expect = "error"
            cases.append(
                Case("output", f"{command} {name}", make(path), expect=expect, timeout=120)
            )
    train = ["train", tiny, "--data", data, "--epochs", "1", "--checkpoint-dir"]
    for name, path, expect in (
        ("a file", str(w / "a_file"), "error"),
        ("under a file", str(w / "a_file" / "ck"), "error"),
        ("name too long", str(w / "out" / long_name), "error"),
        ("long folder in the path", str(w / "out" / long_name / "ck"), "error"),
        ("NUL in name", str(w / "out" / "a\0b"), "error"),
        ("/proc/self", "/proc/self", "error"),
        ("/dev/null", "/dev/null", "error"),
        ("a new nested folder", str(w / "cases" / "new" / "nested" / "ck"), "any"),
    ):
        cases.append(
            Case(
                "output",
                f"train --checkpoint-dir {name}",
                [*train, path],
                expect=expect,
                timeout=150,
            )
        )
    for target in (
        "/dev/zero",
        "/dev/full",
        str(w / "fifo.arch"),
        str(w / "out"),
        "/proc/self/environ",
    ):
        cases.append(Case("output", f"fmt {target}", ["fmt", target]))
    return cases


def fsize_cases(w: Path) -> list[Case]:
    """Each writer under a file-size limit, replacing an existing file it must not truncate."""
    tiny, model = str(w / "tiny.arch"), str(w / "model.jaxexport")
    weights, x, data = str(w / "weights.safetensors"), str(w / "x.npy"), str(w / "data.npz")
    cases = []
    for limit in (1, 512, 4096, 65536):
        for command, name, make in (
            ("compile -o", "m.jaxexport", lambda p: ["compile", tiny, "-o", p]),
            ("graph -o .dot", "g.dot", lambda p: ["graph", tiny, "-o", p]),
            ("graph -o .svg", "g.svg", lambda p: ["graph", tiny, "-o", p]),
            (
                "run -o",
                "o.npy",
                lambda p: ["run", model, "--weights", weights, "--input", x, "-o", p],
            ),
            ("fmt", "spec.arch", lambda p: ["fmt", p]),
            (
                "train checkpoint",
                "ck",
                lambda p: ["train", tiny, "--data", data, "--epochs", "1", "--checkpoint-dir", p],
            ),
        ):
            folder = Path(_dir(w, f"fsize/{limit}/{name}.d"))
            target = folder / name
            if command == "fmt":
                target.write_text((w / "big.arch").read_text())
            elif command == "train checkpoint":
                target.mkdir(exist_ok=True)
                shutil.copy(w / "run" / "checkpoint.safetensors", target / "checkpoint.safetensors")
                target = target / "checkpoint.safetensors"
            else:
                target.write_bytes(b"the old file, which must survive\n" * 4)
            out = str(folder / name)
            cases.append(
                Case(
                    "fsize",
                    f"{command} under ulimit -f {limit} bytes",
                    make(out),
                    fsize=limit,
                    protect={str(target): sha(target)},
                    protect_on_success=False,  # a write that fits the limit replaces it
                    watch=(str(folder), str(target.parent)),
                    expect="any",
                    timeout=150,
                )
            )
    return cases


_BIG_WEIGHTS = """
import sys
import numpy as np
import archdsl
arrays = np.load(sys.argv[1])
params = {name: {"kernel": arrays[name]} for name in arrays.files}
archdsl.save_weights(sys.argv[2], params, {})
"""


def kill_cases(w: Path, rng: random.Random) -> list[Case]:
    """SIGKILL at spread-out moments while archdsl writes; the old file must stay whole and
    the next write must clean the temporary file up."""
    cases = []
    big = str(w / "big_params.npz")
    for i in range(12):
        folder = Path(_dir(w, f"kill/weights{i}"))
        target = folder / "w.safetensors"
        shutil.copy(w / "weights.safetensors", target)
        old = sha(target)
        after = rng.uniform(0.5, 6.0)
        api = (
            f"import runpy, sys; sys.argv = ['x', {big!r}, {str(target)!r}]; exec({_BIG_WEIGHTS!r})"
        )
        cases.append(
            Case(
                "kill",
                f"save_weights killed after {after:.2f}s",
                api=api,
                kill_after=after,
                expect="killed",
                protect={str(target): (old, "complete-safetensors")},
                follow=["graph", str(w / "tiny.arch"), "-o", str(folder / "next.dot")],
                watch=(str(folder),),
                timeout=120,
            )
        )
    for i in range(8):
        folder = Path(_dir(w, f"kill/fmt{i}"))
        target = folder / "big.arch"
        target.write_text((w / "big.arch").read_text())
        after = rng.uniform(0.3, 8.0)
        cases.append(
            Case(
                "kill",
                f"fmt killed after {after:.2f}s",
                ["fmt", str(target)],
                kill_after=after,
                expect="killed",
                protect={str(target): (sha(target), "formatted")},
                follow=["graph", str(w / "tiny.arch"), "-o", str(folder / "next.dot")],
                watch=(str(folder),),
                timeout=120,
            )
        )
    for i in range(6):
        folder = Path(_dir(w, f"kill/train{i}"))
        shutil.copy(w / "run" / "checkpoint.safetensors", folder / "checkpoint.safetensors")
        after = rng.uniform(3.0, 25.0)
        argv = [
            "train",
            str(w / "tiny.arch"),
            "--data",
            str(w / "data.npz"),
            "--epochs",
            "40",
            "--batch-size",
            "8",
            "--checkpoint-dir",
            str(folder),
        ]
        cases.append(
            Case(
                "kill",
                f"train killed after {after:.2f}s",
                argv,
                kill_after=after,
                expect="killed",
                protect={str(folder / "checkpoint.safetensors"): ("complete-safetensors",)},
                follow=["graph", str(w / "tiny.arch"), "-o", str(folder / "next.dot")],
                watch=(str(folder),),
                timeout=120,
            )
        )
    return cases


API_CALLS = {
    "build_graph missing": 'archdsl.build_graph("{w}/nope.arch")',
    "build_graph folder": 'archdsl.build_graph("{w}/out")',
    "build_graph /dev/zero": 'archdsl.build_graph("/dev/zero")',
    "build_graph FIFO": 'archdsl.build_graph("{w}/fifo.arch")',
    "build_graph_text deep": 'archdsl.build_graph_text("network N {{ input 8x8x1 " + "block {{" * 20000 + "}}" * 20000 + "}}", "t.arch")',
    "build_graph_text use recursion": 'archdsl.build_graph_text("network N {{ use N }}", "t.arch")',
    "build_graph_text bad kwarg": 'archdsl.build_graph_text(open("{w}/tiny.arch").read(), "t.arch", classes=-3)',
    "build_graph_text unknown kwarg": 'archdsl.build_graph_text(open("{w}/tiny.arch").read(), "t.arch", nope=3)',
    "build_graph_text float kwarg": 'archdsl.build_graph_text(open("{w}/tiny.arch").read(), "t.arch", classes=float("nan"))',
    "build_graph_text network missing": 'archdsl.build_graph_text(open("{w}/tiny.arch").read(), "t.arch", network="Nope")',
    "parse NUL": 'archdsl.parse("network N {{ input 8x8x1\\0 }}", "t.arch")',
    "compile_file missing": 'archdsl.compile_file("{w}/nope.arch")',
    "compile_spec bad": 'archdsl.compile_spec("network N {{ input 8x8x1 conv }}")',
    "load_weights /dev/zero": 'archdsl.load_weights("/dev/zero")',
    "load_weights FIFO": 'archdsl.load_weights("{w}/fifo")',
    "load_weights folder": 'archdsl.load_weights("{w}/out")',
    "load_weights npz": 'archdsl.load_weights("{w}/data.npz")',
    "save_weights /dev/full": 'archdsl.save_weights("/dev/full", {{"a": {{"k": __import__("numpy").ones(3)}}}}, {{}})',
    "save_weights folder": 'archdsl.save_weights("{w}/out", {{"a": {{"k": __import__("numpy").ones(3)}}}}, {{}})',
    "save_weights missing folder": 'archdsl.save_weights("{w}/no-such-folder-api/w.safetensors", {{"a": {{"k": __import__("numpy").ones(3)}}}}, {{}})',
    "check_weights dtype": 'archdsl.check_weights({{"fc": {{"k": __import__("numpy").ones(3, "float16")}}}}, {{}}, {{"fc": {{"k": __import__("numpy").ones(3, "float32")}}}}, {{}})',
    "load_checkpoint weights": '__import__("archdsl.train.checkpoint").train.checkpoint.load_checkpoint("{w}/weights.safetensors")',
    "load_checkpoint /dev/zero": '__import__("archdsl.train.checkpoint").train.checkpoint.load_checkpoint("/dev/zero")',
    "load_data FIFO": '__import__("archdsl.train.data").train.data.load_data("{w}/fifo.npz", (8, 8, 1), 10)',
    "load_data huge digits": '__import__("archdsl.train.data").train.data.load_data("digits", (4096, 4096, 3), 10)',
    "load_data bad fraction": '__import__("archdsl.train.data").train.data.load_data("{w}/data.npz", (8, 8, 1), 10, test_fraction=2.0)',
    "run_exported npz input": '__import__("archdsl.backend.export").backend.export.run_exported("{w}/model.jaxexport", "{w}/weights.safetensors", "{w}/data.npz")',
    "export_model to folder": 'from archdsl.backend.export import export_model; export_model(archdsl.compile_file("{w}/tiny.arch"), "{w}/out")',
    "TrainConfig seed": '__import__("archdsl.train.config").train.config.TrainConfig(seed=2**70).check()',
    "write_bytes /dev/full": '__import__("archdsl.io").io.write_bytes("/dev/full", b"x" * 10**6)',
    "write_text missing folder": '__import__("archdsl.io").io.write_text("{w}/no-such-folder-api/x.txt", "x")',
}


def api_cases(w: Path) -> list[Case]:
    prelude = "import archdsl\n"
    return [
        Case("api", name, api=prelude + call.format(w=w), timeout=120)
        for name, call in API_CALLS.items()
    ]


def fuzz_cases(w: Path) -> list[Case]:
    tiny = str(w / "tiny.arch")
    cases = []
    for extra in (
        ["--examples", "-1"],
        ["--examples", "0"],
        ["--examples", "1e9"],
        ["--seed", "-5"],
        ["--examples", "notanumber"],
    ):
        cases.append(
            Case(
                "fuzz", f"fuzz {' '.join(extra)}", ["fuzz", tiny, *extra], expect="any", timeout=120
            )
        )
    for path in ("/dev/zero", str(w / "fifo.arch"), str(w / "out"), str(w / "nope.arch")):
        cases.append(Case("fuzz", f"fuzz {path}", ["fuzz", path], timeout=60))
    # The real entry point, in fresh interpreters.
    for argv in (
        ["check", str(w / "nope.arch")],
        ["compile", tiny, "-o", str(w / "out")],
        ["graph", tiny, "-o", "/dev/full"],
        ["fmt", "/dev/zero"],
        ["check", "--bogus"],
        ["run", "/dev/zero", "--weights", "/dev/zero", "--input", "/dev/zero"],
        ["train", tiny, "--data", str(w / "fifo.npz")],
        [],
    ):
        cases.append(
            Case("fresh", f"python -m archdsl {' '.join(argv)[:50]}", argv, fresh=True, timeout=120)
        )
    return cases


# running -------------------------------------------------------------------------------------
class Running:
    """A case's process and its output, read through a pipe: a file-size limit on the
    child must not cut its own error message short."""

    def __init__(self, case: Case, workspace: Path, env: dict[str, str]) -> None:
        self.case = case
        self.start = time.monotonic()
        self.output = bytearray()
        self.popen: subprocess.Popen | None = None
        self.pid = 0
        self.killed = False
        read, write = os.pipe()
        if case.fresh:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "archdsl", *(case.argv or [])],
                stdout=write,
                stderr=write,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=workspace,
                start_new_session=True,
                preexec_fn=_limit(case.fsize),
            )
            self.pid = self.popen.pid
        else:
            pid = os.fork()
            if pid == 0:  # the child
                try:
                    os.close(read)
                    _child(case, write, workspace, env)
                finally:
                    os._exit(99)
            self.pid = pid
        os.close(write)
        os.set_blocking(read, False)
        self.read = read

    def drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.read, 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            if len(self.output) < 1 << 20:
                self.output += chunk

    def text(self) -> str:
        self.drain()
        os.close(self.read)
        return self.output.decode("utf-8", "replace")

    def poll(self) -> int | None:
        self.drain()
        if self.popen is not None:
            return self.popen.poll()
        done, status = os.waitpid(self.pid, os.WNOHANG)
        if done == 0:
            return None
        return os.waitstatus_to_exitcode(status)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def _limit(fsize: int | None) -> Callable[[], None] | None:
    if fsize is None:
        return None
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))


def _child(case: Case, out: int, workspace: Path, env: dict[str, str]) -> None:
    os.setpgrp()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(workspace)
    if case.fsize is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (case.fsize, case.fsize))
    code = 0
    try:
        if case.argv is not None:
            code = int(cli_main(case.argv))
        else:
            exec(compile(case.api or "", "<case>", "exec"), {"__name__": "__case__"})
    except SystemExit as error:
        code = error.code if isinstance(error.code, int) else (0 if error.code is None else 2)
    except ArchError as error:
        print(str(error), file=sys.stderr)
        code = 1
    except BaseException:
        traceback.print_exc()
        code = 70
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def judge(r: Running, code: int | None, workspace: Path, hung: bool) -> Outcome:
    case = r.case
    seconds = time.monotonic() - r.start
    text = r.text()
    first = next((ln for ln in text.splitlines() if "error" in ln), text.strip()[:200])
    if hung:
        return Outcome(case, "hang", code, seconds, f"no exit within {case.timeout:g}s")
    if SECRET in text or "root:x:0:0" in text:
        return Outcome(case, "leak", code, seconds, first)
    lost = _lost(case) if case.protect_on_success or code != 0 else ""
    if lost:
        return Outcome(case, "files lost", code, seconds, lost)
    if r.killed:
        if case.follow:
            follow = subprocess.run(
                [sys.executable, "-m", "archdsl", *case.follow],
                capture_output=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                cwd=workspace,
                timeout=120,
                check=False,
            )
            if follow.returncode != 0:
                return Outcome(
                    case, "traceback", follow.returncode, seconds, follow.stderr.decode()[-300:]
                )
        litter = _litter(case)
        return Outcome(case, "litter" if litter else "held", code, seconds, litter or "killed")
    if (
        "Traceback (most recent call last)" in text
        or code is None
        or code < 0
        or code not in (0, 1, 2, 130, 141)
    ):
        return Outcome(case, "traceback", code, seconds, _last_lines(text))
    litter = _litter(case)
    if litter:
        return Outcome(case, "litter", code, seconds, litter)
    if code == 0 and case.expect == "error":
        return Outcome(case, "accepted", code, seconds, "exit 0 for an input that must be refused")
    if code != 0 and "error" not in text:
        return Outcome(
            case,
            "traceback",
            code,
            seconds,
            "non-zero exit without an error message: " + _last_lines(text),
        )
    return Outcome(case, "held", code, seconds, first)


def _lost(case: Case) -> str:
    for path, want in case.protect.items():
        allowed = (want,) if isinstance(want, str) else want
        got = sha(path) if not Path(path).is_dir() else "folder"
        if got in allowed:
            continue
        if "complete-safetensors" in allowed and _complete_safetensors(Path(path)):
            continue
        if "formatted" in allowed and got != "missing" and _formatted(Path(path)):
            continue
        return f"{path}: expected {'/'.join(a[:10] for a in allowed)}, found {got[:10]}"
    return ""


def _complete_safetensors(path: Path) -> bool:
    try:
        data = path.read_bytes()
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
    except (OSError, ValueError):
        return False
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    return end == len(data) - 8 - size


def _formatted(path: Path) -> bool:
    from archdsl.tools.fmt import format_text

    try:
        text = path.read_text()
        return format_text(text, str(path)) == text
    except (OSError, ArchError, UnicodeDecodeError):
        return False


def _litter(case: Case) -> str:
    for folder in case.watch:
        with contextlib.suppress(OSError):
            temps = [p.name for p in Path(folder).iterdir() if TEMP_MARK in p.name]
            if temps:
                return f"temporary files left in {folder}: {temps[:3]}"
    return ""


def _last_lines(text: str) -> str:
    return " | ".join(text.strip().splitlines()[-3:])[-400:]


def run_all(cases: list[Case], workspace: Path, jobs: int, verbose: bool) -> list[Outcome]:
    env = {k: v for k, v in os.environ.items()}
    env |= {
        "PYTHONPATH": str(ROOT),
        "HOSTILE_SECRET": SECRET,
        "NO_COLOR": "1",
        "JAX_PLATFORMS": "cpu",
    }
    pending = collections.deque(cases)
    running: list[Running] = []
    outcomes: list[Outcome] = []
    while pending or running:
        while pending and len(running) < jobs:
            running.append(Running(pending.popleft(), workspace, env))
        time.sleep(0.01)
        for r in list(running):
            code = r.poll()
            elapsed = time.monotonic() - r.start
            hung = False
            if code is None and r.case.kill_after is not None and elapsed > r.case.kill_after:
                r.kill()
                r.killed = True
                code = _reap(r)
            elif code is None and elapsed > r.case.timeout:
                r.kill()
                _reap(r)
                hung = True
            elif code is None:
                continue
            running.remove(r)
            if r.case.kill_after is not None and not r.killed:
                r.killed = True  # finished before the kill: judge it as killed (whole file)
            outcome = judge(r, code, workspace, hung)
            outcomes.append(outcome)
            if verbose or outcome.verdict != "held":
                print(
                    f"  {outcome.verdict:10} {outcome.case.kind:10} {outcome.case.name[:60]:60} {outcome.seconds:5.1f}s  {outcome.detail[:160]}",
                    flush=True,
                )
            elif len(outcomes) % 100 == 0:
                print(f"  ... {len(outcomes)} of {len(cases)}", flush=True)
    return outcomes


def _reap(r: Running) -> int | None:
    for _ in range(500):
        code = r.poll()
        if code is not None:
            return code
        time.sleep(0.01)
    return None


def report(outcomes: list[Outcome]) -> bool:
    kinds = sorted({o.case.kind for o in outcomes}, key=[o.case.kind for o in outcomes].index)
    columns = ("tried", "held", "tracebacks", "hangs", "files lost", "accepted", "leaks", "litter")
    verdicts = ("held", "traceback", "hang", "files lost", "accepted", "leak", "litter")
    print()
    print(f"{'entry':12}" + "".join(f"{c:>12}" for c in columns))
    totals = collections.Counter()
    for kind in [*kinds, "total"]:
        group = [o for o in outcomes if kind in ("total", o.case.kind)]
        counts = collections.Counter(o.verdict for o in group)
        row = [len(group), *(counts[v] for v in verdicts)]
        if kind != "total":
            totals.update(counts)
        print(f"{kind:12}" + "".join(f"{n:>12,}" for n in row))
    return all(o.verdict == "held" for o in outcomes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-j", "--jobs", type=int, default=2, help="cases at a time (default 2)")
    parser.add_argument("--only", action="append", help="only these kinds (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the workspace")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case")
    args = parser.parse_args(argv)
    if os.environ.get("HOSTILE_SECRET") != SECRET:
        # In this process's own environment, so that /proc/self/environ holds it.
        os.environ["HOSTILE_SECRET"] = SECRET
        os.execv(sys.executable, [sys.executable, __file__, *sys.argv[1:]])
    workspace = Path(tempfile.mkdtemp(prefix="archdsl-hostile-"))
    try:
        started = time.monotonic()
        print(
            f"workspace {workspace}: building the model, weights, data and checkpoint ...",
            flush=True,
        )
        make_workspace(workspace)
        cases = corpus(workspace, args.seed)
        if args.only:
            cases = [c for c in cases if c.kind in args.only]
        print(f"{len(cases):,} cases, {args.jobs} at a time; failures as they come:", flush=True)
        outcomes = run_all(cases, workspace, args.jobs, args.verbose)
        ok = report(outcomes)
        print(f"\n{time.monotonic() - started:.0f}s in all")
        bad = [o for o in outcomes if o.verdict != "held"]
        if bad:
            print(f"\nnot held ({len(bad)}):")
            for o in bad:
                print(f"  {o.verdict:10} {o.case.kind:10} {o.case.name[:70]}: {o.detail[:200]}")
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"kept {workspace}")
        else:
            shutil.rmtree(workspace, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
