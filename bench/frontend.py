"""Time the front end (parse, lower, passes) on ResNet-152 and on generated networks.

    python bench/frontend.py [--sizes 2000 20000 100000] [--repeat 3] [--parser both]

Prints, for each network, the layer count, the best time of each stage, the total,
and the growth factor against the previous size (linear growth: about 10x per 10x).
`--parser both` runs the table twice, parsing with Lark's Cython plugin
(`lark-cython`, the default when installed) and with pure-Python Lark.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from archdsl.frontend import paused_gc
from archdsl.graph.lower import lower
from archdsl.graph.passes import run_pipeline
from archdsl.lang import parser as lang_parser
from archdsl.lang.loader import load_file, load_text

T = TypeVar("T")
SPECS = Path(__file__).resolve().parents[1] / "specs"


def generated_spec(layers: int) -> str:
    """A plain network of `layers` nodes: conv/batchnorm/relu triples and residuals."""
    lines = ["network Generated {", "    input 16x16x8"]
    count = 1
    while count < layers:
        if count % 40 == 1 and layers - count >= 5:
            lines.append("    residual {")
            lines.append("        conv 8 3x3 same bias = false -> batchnorm -> relu")
            lines.append("    }")
            count += 4
        else:
            lines.append("    conv 8 3x3 same -> relu" if count % 2 else "    batchnorm")
            count += 2 if count % 2 else 1
    lines.append("}")
    return "\n".join(lines) + "\n"


def best(run: Callable[[], T], repeat: int) -> tuple[float, T]:
    """The best wall time of `repeat` runs, and the last result."""
    times = []
    result: T
    for _ in range(repeat):
        with paused_gc():
            start = time.perf_counter()
            result = run()
            times.append(time.perf_counter() - start)
    return min(times), result


def measure(label: str, load: Callable[[], object], repeat: int) -> tuple[int, float]:
    """Time each stage; print one row; return (layers, total seconds)."""
    t_parse, program = best(load, repeat)
    t_lower, graph = best(lambda: lower(program), repeat)  # type: ignore[arg-type]
    t_passes, checked = best(lambda: run_pipeline(graph), repeat)
    total = t_parse + t_lower + t_passes
    print(
        f"{label:<22} {len(checked):>8,} {t_parse * 1e3:>10.1f} {t_lower * 1e3:>10.1f} "
        f"{t_passes * 1e3:>10.1f} {total * 1e3:>10.1f}",
        end="",
    )
    return len(checked), total


def table(sizes: list[int], repeat: int) -> None:
    """One table: ResNet-152, then each generated size with its growth factor."""
    header = f"{'network':<22} {'layers':>8} {'parse ms':>10} {'lower ms':>10} {'passes ms':>10} {'total ms':>10}"
    print(header + "   growth")
    print("-" * (len(header) + 9))
    measure("ResNet-152", lambda: load_file(SPECS / "resnet152.arch"), repeat)
    print()
    previous: tuple[int, float] | None = None
    for size in sizes:
        text = generated_spec(size)
        times = repeat if size <= 20_000 else 1
        layers, total = measure(f"generated {size:,}", lambda t=text: load_text(t), times)
        if previous is not None:
            print(
                f"   x{total / previous[1]:.1f} time for x{layers / previous[0]:.1f} layers",
                end="",
            )
        print()
        previous = (layers, total)


def main() -> None:
    """Run the benchmark and print the table(s)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 20_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parser", choices=["cython", "pure", "both"], default="both")
    args = parser.parse_args()
    kinds = ["cython", "pure"] if args.parser == "both" else [args.parser]
    for kind in kinds:
        if kind == "cython" and lang_parser.lark_cython is None:
            print("lark-cython is not installed: no cython table")
            continue
        lang_parser.USE_CYTHON = kind == "cython"
        print(f"\nparser: {'lark-cython' if kind == 'cython' else 'pure-Python Lark'}")
        table(args.sizes, args.repeat)


if __name__ == "__main__":
    main()
