"""Throw generated and mutated inputs at the front end's check path; count crashes and speed.

    python bench/fuzz_frontend.py                    # 100,000 inputs, 2 processes
    python bench/fuzz_frontend.py -n 20000 --seed 3 --workers 1

Each input is written to a file and checked in-process with
`archdsl.cli.check.check_file` (parse, imports, every network lowered with its
default arguments, all passes) - the path `archdsl check` takes, without a subprocess.

Outcomes:
- `valid`: checked clean;
- `rejected`: an `ArchError` whose message starts `file:line:col: error:`;
- `crash`: any other exception, or an `ArchError` without a position;
- `slow`: the check, or the fmt round trip, took longer than `--timeout` seconds plus
  1 s per 20 kB of input (interrupted by SIGALRM): a hang or a quadratic;
- `fmt`: for an input that parses, `archdsl fmt` changed its syntax tree, was not
  idempotent, or raised.

Inputs: the specs in `specs/`, valid and broken networks from `archdsl.testing`, and
mutations of them: random bytes, truncations, token swaps/deletions/duplications,
character edits, huge numbers, deep nesting (braces, parentheses, unary minus, block
chains, nested repeats), import cycles and odd imports, splices, CRLF/tabs/NUL/BOM.

Crashing inputs are minimised (lines, then characters) and saved to `--crash-dir`
(default `bench/crashes/`), one file per distinct crash site, with `summary.txt`.
Exit status 1 if there is any crash or fmt failure.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import random
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archdsl.cli.check import check_file  # noqa: E402
from archdsl.errors import ArchError, ArchSyntaxError  # noqa: E402
from archdsl.lang.grammar import keywords  # noqa: E402
from archdsl.lang.parser import parse  # noqa: E402
from archdsl.tools.fmt import format_text  # noqa: E402

POSITIONED = re.compile(r"^[^\n]+:\d+:\d+: error: ")
SLOWEST_RATE = 20_000
"""Bytes per second: an input gets `--timeout` plus its size at this rate."""
CASE = "case.arch"

TOKENS = [
    *keywords(),
    "N",
    "Net",
    "c",
    "conv",
    "dense",
    "relu",
    "input",
    "maxpool",
    "avgpool",
    "flatten",
    "globalavgpool",
    "batchnorm",
    "lrn",
    "dropout",
    "softmax",
    "same",
    "valid",
    "ceil",
    "stride",
    "padding",
    "groups",
    "dilation",
    "bias",
    "shortcut",
    "auto",
    "projection",
    "zeropad",
    "identity",
    "weight",
    "true",
    "false",
    "0",
    "1",
    "2",
    "3",
    "7",
    "64",
    "3x3",
    "1x1",
    "28x28x3",
    "0.5",
    "1e-4",
    "99999999999",
    "-",
    '"lib.arch"',
    '"case.arch"',
    "(",
    ")",
    "{",
    "}",
    ",",
    "=",
    "->",
    ":",
    "..",
    "+",
    "*",
    "/",
    "//",
    "%",
    "\n",
    "#c",
    "\\\n",
    "b0(",
    "Net(",
]

# Files beside each case: imports of them make cycles, dead ends and odd files.
HELPERS = {
    "lib.arch": "block b0(c = 4) {\n    conv c 3x3 same -> relu\n}\n",
    "cycle_a.arch": 'import "cycle_b.arch"\nblock ca() {\n    relu\n}\n',
    "cycle_b.arch": 'import "cycle_a.arch"\nblock cb() {\n    relu\n}\n',
    "bad_syntax.arch": "block broken( {\n",
    "dup.arch": "block b0() {\n    relu\n}\n",
}
IMPORTS = [
    '"lib.arch"',
    '"cycle_a.arch"',
    '"case.arch"',
    '"bad_syntax.arch"',
    '"dup.arch"',
    '"binary.arch"',
    '"folder.arch"',
    '"missing.arch"',
    '"./lib.arch"',
    '"../lib.arch"',
    '"http://x/y.arch"',
    '""',
    '"/dev/null"',
    '"lib.arch\\u0000"',
]


def corpus(generated: int, seed: int) -> list[str]:
    """The specs of this repository and `generated` valid and broken generated specs."""
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "specs").glob("*.arch"))]
    if generated <= 0:
        return texts
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    from archdsl.testing import broken_spec_texts, spec_texts

    @hseed(seed)
    @settings(
        max_examples=generated,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(spec_texts() | broken_spec_texts() | spec_texts(max_depth=1, ranks=(1,)))
    def collect(text: str) -> None:
        texts.append(text)

    collect()
    _ = st
    # hypothesis leaves a gc callback behind; a timeout raised inside it would be lost
    import gc

    gc.callbacks[:] = [c for c in gc.callbacks if "hypothesis" not in repr(c.__code__)]
    return texts


# Mutations --------------------------------------------------------------------------------

_TOKEN = re.compile(
    r'"[^"\n]*"|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*\(?|[0-9]+(?:x[0-9]+)+|'
    r"[0-9]+\.[0-9]+|[0-9]+|->|\.\.|//|\s+|.",
    re.S,
)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def m_random_bytes(rng: random.Random, base: str) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))


def m_random_tokens(rng: random.Random, base: str) -> str:
    return " ".join(rng.choice(TOKENS) for _ in range(rng.randrange(0, 80)))


def m_truncate(rng: random.Random, base: str) -> str:
    return base[: rng.randrange(0, len(base) + 1)]


def m_token_edit(rng: random.Random, base: str) -> str:
    words = tokens(base)
    for _ in range(rng.randrange(1, 5)):
        if not words:
            break
        i, j = rng.randrange(len(words)), rng.randrange(len(words))
        action = rng.randrange(5)
        if action == 0:
            words[i], words[j] = words[j], words[i]
        elif action == 1:
            del words[i]
        elif action == 2:
            words.insert(i, words[j])
        elif action == 3:
            words[i] = rng.choice(TOKENS)
        else:
            words.insert(i, " " + rng.choice(TOKENS) + " ")
    return "".join(words)


def m_char_edit(rng: random.Random, base: str) -> str:
    chars = list(base)
    alphabet = '{}()[],.:;=->x#"\\\n\t 0123456789abcxyz_é\u2028\x0c\x00'
    for _ in range(rng.randrange(1, 6)):
        i = rng.randrange(len(chars) + 1)
        action = rng.randrange(3)
        if action == 0 and i < len(chars):
            del chars[i]
        elif action == 1 and i < len(chars):
            chars[i] = rng.choice(alphabet)
        else:
            chars.insert(i, rng.choice(alphabet))
    return "".join(chars)


def m_huge_number(rng: random.Random, base: str) -> str:
    words = tokens(base)
    numbers = [i for i, w in enumerate(words) if w[:1].isdigit()]
    big = rng.choice(
        [
            str(2**31 - 1),
            str(2**31),
            str(2**63),
            "0",
            "00000000001",
            "9" * rng.randrange(10, 6000),
            "1" + "0" * rng.randrange(300, 400) + ".5",
            "1e308",
            "1e309",
            "1e-400",
            f"{2**31 - 1}x{2**31 - 1}",
            "65536x65536x65536",
            "46341x46341x1000",
            "1x" * rng.randrange(2, 300) + "1",
        ]
    )
    if not numbers:
        return base + big
    words[rng.choice(numbers)] = big
    return "".join(words)


def m_deep(rng: random.Random, base: str) -> str:
    n = rng.choice([10, 40, 63, 64, 65, 100, 500, 3000, 20000])
    kind = rng.randrange(9)
    if kind in (4, 5) and rng.randrange(8):
        kind = 0  # node-count explosions are slow to refuse (FRONTEND_BUGS.md 8): rarely
    body = "network N {\n    input 8x8x3\n"
    if kind == 0:
        return body + "residual {\n" * n + "relu\n" + "}\n" * n + "}\n"
    if kind == 1:
        return body + "dense " + "(" * n + "1" + ")" * n + "\n}\n"
    if kind == 2:
        return body + "dense " + "- " * n + "1\n}\n"
    if kind == 3:
        blocks = "".join(f"block b{i}() {{\n    b{i + 1}()\n}}\n" for i in range(min(n, 2000)))
        return blocks + f"block b{min(n, 2000)}() {{\n    relu\n}}\n" + body + "b0()\n}\n"
    if kind == 4:
        depth = rng.randrange(2, 40)
        return body + "repeat 2 {\n" * depth + "relu\n" + "}\n" * depth + "}\n"
    if kind == 5:
        return (
            body
            + rng.choice(
                [
                    "repeat 2000000 { relu }\n",
                    "repeat 100000 { relu }\n",
                    "repeat 2147483647 { relu }\n",
                ]
            )
            + "}\n"
        )
    if kind == 6:
        return body + " -> ".join(["relu"] * n) + "\n}\n"
    if kind == 7:
        return body + "dense " + " + ".join(["1"] * n) + "\n}\n"
    return body + "concat {\n" + "branch { relu }\n" * n + "}\n}\n"


def m_import(rng: random.Random, base: str) -> str:
    lines = [f"import {rng.choice(IMPORTS)}" for _ in range(rng.randrange(1, 4))]
    return "\n".join(lines) + "\n" + base


def m_splice(rng: random.Random, base: str, other: str) -> str:
    return base[: rng.randrange(len(base) + 1)] + other[rng.randrange(len(other) + 1) :]


def m_encoding(rng: random.Random, base: str) -> str | bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return base.replace("\n", "\r\n")
    if kind == 1:
        return base.replace("    ", "\t")
    if kind == 2:
        return "\ufeff" + base
    if kind == 3:
        i = rng.randrange(len(base) + 1)
        return base[:i] + "\x00" + base[i:]
    if kind == 4:
        return base.replace("\n", rng.choice(["\r", "\x0c\n", "\u2028", "\n\x0b"]))
    data = base.encode("utf-8")
    i = rng.randrange(len(data) + 1)
    return data[:i] + bytes([rng.choice([0x80, 0xC3, 0xFF, 0xED])]) + data[i:]


def m_many(rng: random.Random, base: str) -> str:
    n = rng.choice([1000, 5000, 20000])
    return "network N {\n    input 8\n" + "    dense 2\n" * n + "}\n"


MUTATORS = [
    (m_random_bytes, 1),
    (m_random_tokens, 6),
    (m_truncate, 6),
    (m_token_edit, 14),
    (m_char_edit, 10),
    (m_huge_number, 4),
    (m_deep, 1),
    (m_import, 3),
    (m_splice, 3),
    (m_encoding, 3),
    (m_many, 0.02),
    (None, 3),  # None: the corpus text itself
]


SPECIAL = [
    # reading these never ends: run once each, not at random
    b'import "/dev/zero"\nnetwork N {\n    input 8\n}\n',
    b'import "/dev/urandom"\nnetwork N {\n    input 8\n}\n',
    b'import "/proc/self/status"\nnetwork N {\n    input 8\n}\n',
    b"",
    b"\n" * 100_000,
    b"#" * 1_000_000,
    b"network N {\n    input 8\n" + b"    dense 2\n" * 50_000 + b"}\n",
]


def make_input(index: int, seed: int, texts: list[str]) -> tuple[str, bytes]:
    """The `index`-th input: deterministic in (seed, index), whatever the worker."""
    if index < len(SPECIAL):
        return "special", SPECIAL[index]
    rng = random.Random(seed * 1_000_003 + index)
    functions = [m for m, _ in MUTATORS]
    weights = [w for _, w in MUTATORS]
    mutator = rng.choices(functions, weights)[0]
    base = rng.choice(texts)
    if mutator is None:
        out: str | bytes = base
        name = "corpus"
    elif mutator is m_splice:
        out = m_splice(rng, base, rng.choice(texts))
        name = "splice"
    else:
        out = mutator(rng, base)
        name = mutator.__name__[2:]
        if rng.randrange(4) == 0 and isinstance(out, str) and name != "many":
            out = m_token_edit(rng, out)  # stack a second mutation now and then
    data = out if isinstance(out, bytes) else out.encode("utf-8", errors="surrogatepass")
    return name, data


# Running one input -------------------------------------------------------------------------


class _Timeout(BaseException):
    """SIGALRM fired: the input took too long (BaseException: not caught as a crash)."""


def _alarm(signum: int, frame: object) -> None:
    # If the exception lands where it is swallowed (a gc callback), fire again soon;
    # `run_one` stops the timer once it has the outcome.
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    raise _Timeout()


@dataclass
class Outcome:
    kind: str  # valid | rejected | crash | slow | fmt
    key: str = ""
    detail: str = ""


def run_one(folder: Path, data: bytes, timeout: float, check_fmt: bool) -> Outcome:
    path = folder / CASE
    path.write_bytes(data)
    timeout += len(data) / SLOWEST_RATE  # big inputs may take longer, not forever
    try:
        outcome = _check(path, timeout)
        if check_fmt and outcome.kind in ("valid", "rejected"):
            problem = _fmt_problem(data, timeout)
            if problem:
                return Outcome("fmt", problem[0], problem[1])
        return outcome
    except _Timeout:
        return Outcome(
            "slow", "over the time allowance", f"{len(data):,} bytes, over {timeout:.1f}s"
        )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _check(path: Path, timeout: float) -> Outcome:
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        check_file(str(path))
    except ArchError as error:
        try:
            text = str(error)
        except Exception:
            return Outcome("crash", "str(ArchError) raised", traceback.format_exc())
        if POSITIONED.match(text):
            return Outcome("rejected", type(error).__name__)
        return Outcome("crash", f"unpositioned {type(error).__name__}: {error.message[:60]}", text)
    except (_Timeout, KeyboardInterrupt):
        raise
    except BaseException as error:  # the point: catch everything
        return Outcome("crash", _site(error), traceback.format_exc())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return Outcome("valid")


def _fmt_problem(data: bytes, timeout: float) -> tuple[str, str] | None:
    try:
        text = data.decode("utf-8")
        tree = parse(text)
    except (UnicodeDecodeError, ArchError):
        return None
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        out = format_text(text)
        try:
            again_tree = parse(out)
        except ArchSyntaxError as error:
            return "fmt output does not parse", f"{out}\n---- error ----\n{error}"
        if not _equal(again_tree, tree):
            return "fmt changed the syntax tree", out
        again = format_text(out)
        if again != out:
            return "fmt is not idempotent", f"{out}\n---- second pass ----\n{again}"
    except (_Timeout, KeyboardInterrupt):
        raise
    except Exception as error:
        return f"fmt raised {_site(error)}", traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return None


def _equal(a: object, b: object) -> bool:
    """`a == b` for syntax trees as deep as the parser allows (dataclass `==` recurses)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        return a == b
    finally:
        sys.setrecursionlimit(limit)


def _site(error: BaseException) -> str:
    """`Type at file:line`, the innermost archdsl (else any) frame: one key per crash site."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "archdsl" in f.filename] or frames
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    return f"{type(error).__name__} at {where}"


# Workers -------------------------------------------------------------------------------------


@dataclass
class Tally:
    counts: collections.Counter = field(default_factory=collections.Counter)
    by_mutator: collections.Counter = field(default_factory=collections.Counter)
    crashes: dict[str, list[tuple[bytes, str]]] = field(default_factory=dict)
    per_key: collections.Counter = field(default_factory=collections.Counter)
    slowest: list[tuple[float, str, int, int]] = field(default_factory=list)
    seconds: float = 0.0


_TEXTS: list[str] = []
_SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
"""Inputs are files (imports need a folder); a RAM disk makes writing them cheap."""


def _prepare(folder: Path) -> None:
    for name, text in HELPERS.items():
        (folder / name).write_text(text)
    (folder / "binary.arch").write_bytes(b"\x00\xff\xfe" * 10)
    (folder / "folder.arch").mkdir(exist_ok=True)


def worker(job: tuple[int, int, int, float, bool, int]) -> Tally:
    start, stop, seed, timeout, check_fmt, memory = job
    if memory:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    signal.signal(signal.SIGALRM, _alarm)
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="archdsl-fuzz-", dir=_SCRATCH) as tmp:
        folder = Path(tmp) / "work"
        folder.mkdir()
        _prepare(folder)
        began = time.perf_counter()
        for index in range(start, stop):
            mutator, data = make_input(index, seed, _TEXTS)
            t0 = time.perf_counter()
            outcome = run_one(folder, data, timeout, check_fmt)
            elapsed = time.perf_counter() - t0
            tally.counts[outcome.kind] += 1
            tally.by_mutator[(mutator, outcome.kind)] += 1
            tally.slowest = sorted([*tally.slowest, (elapsed, mutator, index, len(data))])[-5:]
            if outcome.kind in ("crash", "slow", "fmt"):
                key = f"{outcome.kind}: {outcome.key}"
                tally.per_key[key] += 1
                kept = tally.crashes.setdefault(key, [])
                if len(kept) < 3:
                    kept.append((data, outcome.detail))
        tally.seconds = time.perf_counter() - began
    return tally


def merge(tallies: list[Tally]) -> Tally:
    total = Tally()
    for tally in tallies:
        total.counts.update(tally.counts)
        total.by_mutator.update(tally.by_mutator)
        total.per_key.update(tally.per_key)
        for key, kept in tally.crashes.items():
            total.crashes.setdefault(key, []).extend(kept)
        total.slowest = sorted(total.slowest + tally.slowest)[-5:]
    return total


# Minimising and saving crashes ----------------------------------------------------------------


def minimise(data: bytes, key: str, timeout: float, budget: int = 400) -> bytes:
    """Delete lines, then characters, while the input still gives the same crash key."""
    with tempfile.TemporaryDirectory(prefix="archdsl-min-", dir=_SCRATCH) as tmp:
        folder = Path(tmp)
        _prepare(folder)

        def same(candidate: bytes) -> bool:
            outcome = run_one(folder, candidate, timeout, check_fmt=True)
            return f"{outcome.kind}: {outcome.key}" == key

        for unit in (b"\n", None):
            parts = data.split(b"\n") if unit else [bytes([c]) for c in data]
            joiner = b"\n" if unit else b""
            chunk = max(1, len(parts) // 2)
            while chunk >= 1 and budget > 0:
                i = 0
                while i < len(parts) and budget > 0:
                    candidate = parts[:i] + parts[i + chunk :]
                    budget -= 1
                    if candidate and same(joiner.join(candidate)):
                        parts = candidate
                    else:
                        i += chunk
                chunk //= 2
            data = joiner.join(parts)
    return data


def save(total: Tally, folder: Path, timeout: float) -> list[str]:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    lines = []
    for number, (key, kept) in enumerate(sorted(total.crashes.items()), start=1):
        data, detail = min(kept, key=lambda k: len(k[0]))
        kind = key.split(":", 1)[0]
        name = f"{kind}-{number:02d}.arch"
        if kind == "slow":  # not minimised: each try would take as long
            small = data
        else:
            small = minimise(data, key, timeout)
            (folder / f"{kind}-{number:02d}.original.arch").write_bytes(data)
        (folder / name).write_bytes(small)
        lines.append(
            f"## {name}: {key}\n\n{len(small)} bytes (from {len(data)}): "
            f"{small[:300]!r}\n\n{detail.strip()[-3000:]}\n"
        )
    (folder / "summary.txt").write_text("\n".join(lines), encoding="utf-8")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--count", type=int, default=100_000, help="inputs to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--generated",
        type=int,
        default=300,
        help="valid and broken networks drawn from archdsl.testing",
    )
    parser.add_argument(
        "--timeout", type=float, default=2.0, help="seconds before an input counts as slow"
    )
    parser.add_argument(
        "--memory",
        type=int,
        default=3 * 2**30,
        help="address-space limit per worker in bytes (0: none)",
    )
    parser.add_argument("--no-fmt", action="store_true", help="skip the fmt round trip")
    parser.add_argument("--crash-dir", type=Path, default=ROOT / "bench" / "crashes")
    args = parser.parse_args()

    t0 = time.perf_counter()
    texts = corpus(args.generated, args.seed)
    _TEXTS[:] = texts
    print(f"corpus: {len(texts)} specs ({time.perf_counter() - t0:.1f}s)", flush=True)

    workers = max(1, min(args.workers, args.count))
    bounds = [args.count * i // workers for i in range(workers + 1)]
    jobs = [
        (bounds[i], bounds[i + 1], args.seed, args.timeout, not args.no_fmt, args.memory)
        for i in range(workers)
    ]
    began = time.perf_counter()
    if workers == 1:
        tallies = [worker(jobs[0])]
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            tallies = pool.map(worker, jobs)
    wall = time.perf_counter() - began
    total = merge(tallies)

    n = sum(total.counts.values())
    print(f"\ninputs      {n:,}  ({args.workers} worker(s), seed {args.seed})")
    for kind in ("valid", "rejected", "crash", "slow", "fmt"):
        print(f"{kind:<11} {total.counts[kind]:,}")
    print(f"wall time   {wall:.1f}s")
    print(f"throughput  {n / wall:,.0f} inputs/s")
    print("\nby mutation (valid / rejected / crash+slow+fmt):")
    for name in sorted({m for m, _ in total.by_mutator}):
        row = [total.by_mutator[(name, k)] for k in ("valid", "rejected")]
        bad = sum(total.by_mutator[(name, k)] for k in ("crash", "slow", "fmt"))
        print(f"  {name:<14} {row[0]:>7,} {row[1]:>7,} {bad:>5,}")
    print("\nslowest inputs:")
    for seconds, mutator, index, size in reversed(total.slowest):
        print(f"  {seconds:6.1f} s  {mutator} #{index} ({size:,} bytes)")
    if total.crashes:
        print(f"\n{len(total.crashes)} distinct problems; minimised inputs in {args.crash_dir}:")
        signal.signal(signal.SIGALRM, _alarm)
        if args.memory:
            resource.setrlimit(resource.RLIMIT_AS, (args.memory, args.memory))
        save(total, args.crash_dir, args.timeout)
        for key in sorted(total.crashes):
            print(f"  {key}  ({total.per_key[key]:,} inputs)")
        return 1
    print("\nno crashes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
