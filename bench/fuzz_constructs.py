"""Random specs that mix the constructs where graph-level bugs hide; count non-ArchError escapes.

    python bench/fuzz_constructs.py --seed 1 -n 3000

Each spec mixes `aux`, `use ... upto ... frozen upto`, `from`, `repeat`, `residual` (every
shortcut mode), merges, recursive and empty blocks, and names that collide across them,
then goes through `build_graph_text`. Outcomes: `valid`, `rejected` (an `ArchError` with a
position), and the failures: an exception that is not an `ArchError` (printed with the
crash site and the first spec that hit it), an `ArchError` without a position, or `slow`
(more than `--timeout` seconds, by SIGALRM). Exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import collections
import random
import signal
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archdsl.errors import ArchError
from archdsl.frontend import build_graph_text

NAMES = [
    "a",
    "b",
    "h",
    "f",
    "d1",
    "d2",
    "r",
    "x",
    "input",
    "B",
    "N",
    "relu",
    "conv",
    "r.1.f",
    "a.h",
]
LAYERS = [
    "dense 4",
    "relu",
    "conv 2 1x1",
    "conv 2 3x3 stride 2 valid",
    "maxpool 2x2",
    "flatten",
    "globalavgpool",
    "batchnorm",
    "identity",
    "dropout 0.5",
    "b()",
    "b(2)",
    "e()",
]


class _Slow(Exception):
    pass


def _layer(r: random.Random, depth: int) -> str:
    k = r.random()
    if depth > 3 or k < 0.35:
        if r.random() < 0.2:
            return f"{r.choice(['dense 3', 'conv 3 2x2 stride 2'])} as {r.choice(NAMES)}"
        return r.choice(LAYERS)
    if k < 0.5:
        mode = r.choice(
            ["", "shortcut = identity ", "shortcut = zeropad ", "shortcut = projection "]
        )
        return f"residual {mode}{{ {_body(r, depth + 1)} }}"
    if k < 0.6:
        merge = r.choice(["concat", "add"])
        return (
            f"{merge} {{ branch {{ {_body(r, depth + 1)} }} branch {{ {_body(r, depth + 1)} }} }}"
        )
    if k < 0.72:
        count = r.choice(["0", "1", "2", "3", "n", "2147483647"])
        return f"repeat {count} {r.choice(['', 'as r '])}{{ {_body(r, depth + 1)} }}"
    if k < 0.8:
        return f"{{ {_body(r, depth + 1)} }}"
    if k < 0.9:
        return f"from {r.choice(NAMES)} -> {_layer(r, depth + 1)}"
    return f"frozen {_layer(r, depth + 1)}"


def _body(r: random.Random, depth: int) -> str:
    parts = [_layer(r, depth) for _ in range(r.randint(0, 3))]
    return " -> ".join(parts) if parts and r.random() < 0.5 else "\n".join(parts)


def _statement(r: random.Random) -> str:
    if r.random() < 0.15:
        weight = r.choice(["", "weight = 0.2 ", "weight = -0.1 "])
        return f"aux {r.choice(['a', 'h', 'b'])} {weight}{{ {_body(r, 1)} }}"
    text = _layer(r, 0)
    if r.random() < 0.15:
        text += " : " + r.choice(["8", "4x4x2", "2"])
    return text


def _network(r: random.Random, name: str, use: bool) -> str:
    if use:
        line = f"use {r.choice(['B', 'N', 'A'])}{r.choice(['', '(2)', '(n = 99)'])}"
        if r.random() < 0.6:
            line += f" upto {r.choice(NAMES)}"
        if r.random() < 0.5:
            line += " frozen" + (f" upto {r.choice(NAMES)}" if r.random() < 0.6 else "")
    else:
        line = "input " + r.choice(["8x8x3", "8", "7x7x2", "16x16x1"])
    lines = [line, *(_statement(r) for _ in range(r.randint(1, 5)))]
    return f"network {name}(n = 2 in 1..4) {{\n" + "\n".join(lines) + "\n}\n"


def spec(r: random.Random) -> str:
    """One random spec: two blocks (one empty) and two or three networks."""
    text = f"block b(c = 2) {{ {_body(r, 2)} }}\nblock e() {{ }}\n"
    text += _network(r, "B", False)
    if r.random() < 0.5:
        text += _network(r, "A", True)
    return text + _network(r, "N", r.random() < 0.6)


def _alarm(*_: object) -> None:
    raise _Slow


def main() -> int:
    """Run the specs; print the outcome counts and each distinct failure once."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--timeout", type=int, default=10)
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, _alarm)
    r = random.Random(args.seed)
    counts: collections.Counter[str] = collections.Counter()
    failures: dict[str, str] = {}
    for _ in range(args.n):
        text = spec(r)
        signal.alarm(args.timeout)
        try:
            build_graph_text(text, "f.arch")
            counts["valid"] += 1
        except ArchError as error:
            if str(error).startswith("f.arch:"):
                counts["rejected"] += 1
            else:
                counts["unpositioned"] += 1
                failures.setdefault(f"unpositioned: {error.message[:80]}", text)
        except _Slow:
            counts["slow"] += 1
            failures.setdefault("slow", text)
        except Exception as error:  # the point of the tool: anything else is a bug
            site = traceback.extract_tb(error.__traceback__)[-1]
            counts["crash"] += 1
            key = f"{type(error).__name__} at {site.filename}:{site.lineno}: {str(error)[:80]}"
            failures.setdefault(key, text)
        finally:
            signal.alarm(0)
    print(", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for key, text in failures.items():
        print(f"\n{key}\n{text}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
