"""Time the front end: `archdsl check` as a process, and parse / lower / passes inside one.

    python bench/frontend.py [--sizes 2000 20000 100000] [--repeat 3] [--trees . /work/main]

Generates plain networks of each size (conv/batchnorm/relu and residuals) and prints:

1. `archdsl check FILE` run as a subprocess, best wall and CPU time of `--repeat` runs, for
   each source tree in `--trees` (`PYTHONPATH` switched, so two trees compare in one
   run under the same load), with the fixed cost (a 10-layer spec: interpreter start,
   imports), the interpreter's own start (`python -c pass`) and ms per 1,000 layers;
   linear growth keeps those columns flat. On a loaded machine, read the CPU column.
2. The in-process split for each parser loop (`cython`: Lark with `lark-cython`, `pure`:
   Lark alone): parse, lower, passes, with the garbage collector paused as
   `archdsl check` pauses it.

Each tree's stages run in a child process (`--stages`), so each imports its own code.
Children run as an installed package does: bytecode cached (in a temporary
`PYTHONPYCACHEPREFIX`, so no tree is written to, even where the environment sets
`PYTHONDONTWRITEBYTECODE`), after one untimed run that fills it and the parser cache
(`ARCHDSL_CACHE`, also temporary); the `no parser cache` row shows a first run's cost.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
SPECS = HERE.parents[1] / "specs"


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


def _best(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The best wall time of `repeat` runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def stages(paths: list[str], backends: list[str], repeat: int) -> dict[str, Any]:
    """In this process: each backend's best parse, lower and passes time for each file."""
    from archdsl.frontend import paused_gc
    from archdsl.graph.lower import lower
    from archdsl.graph.passes import run_pipeline
    from archdsl.lang import parser
    from archdsl.lang.loader import load_text

    cython = parser.lark_cython is not None
    rows: dict[str, Any] = {}
    for backend in backends:
        if backend == "cython" and not cython:
            continue
        parser.USE_CYTHON = backend == "cython"
        for path in paths:
            text = Path(path).read_text(encoding="utf-8")
            times = repeat if len(text) < 1_000_000 else 1
            with paused_gc():
                load_text(text)  # build the parser once, outside the timing
                t_parse, program = _best(lambda t=text: load_text(t), times)
                t_lower, graph = _best(lambda p=program: lower(p), times)
                t_passes, checked = _best(lambda g=graph: run_pipeline(g), times)
            rows[f"{backend} {path}"] = [len(checked), t_parse, t_lower, t_passes]
    return rows


def _process(command: list[str], repeat: int, **options: Any) -> tuple[float, float]:
    """Best wall time and best CPU time (user + system) of `repeat` runs of `command`.

    CPU time is the better guide on a shared machine: a loaded one stretches the wall
    time of a process that waits for a core, not the CPU time it uses.
    """
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, **options)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls), min(cpus)


_CHILD_ENV: dict[str, str] = {}
"""Set by `report`: the bytecode and parser cache folders of every child process."""


def _env(tree: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, **_CHILD_ENV, "PYTHONPATH": str(tree), **extra}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _check_process(tree: Path, path: str, repeat: int, **extra: str) -> tuple[float, float]:
    """`_process` of `python -m archdsl check -q PATH` run in `tree` (`-m` puts the
    working folder first on `sys.path`: the tree's `archdsl` is the one imported)."""
    command = [sys.executable, "-m", "archdsl", "check", "-q", path]
    return _process(command, repeat, env=_env(tree, **extra), cwd=tree)


def _stages_in(tree: Path, paths: list[str], backends: list[str], repeat: int) -> dict:
    env = _env(tree)
    command = [sys.executable, str(HERE), "--stages", *paths, "--backends", *backends]
    done = subprocess.run(
        [*command, "--repeat", str(repeat)],
        env=env,
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout)


def _per_k(seconds: float, layers: int) -> str:
    """Milliseconds per 1,000 layers, right-aligned."""
    return f"{seconds * 1e6 / layers:>9.1f}"


def report(trees: list[Path], sizes: list[int], backends: list[str], repeat: int) -> None:
    """Print both tables."""
    print(
        f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1, 5 min), "
        f"{os.cpu_count()} cpus, python {sys.version.split()[0]}"
    )
    with tempfile.TemporaryDirectory() as folder:
        _CHILD_ENV["PYTHONPYCACHEPREFIX"] = str(Path(folder) / "pyc")
        _CHILD_ENV["ARCHDSL_CACHE"] = str(Path(folder) / "parsers")
        paths = {}
        for size in sizes:
            paths[size] = str(Path(folder) / f"generated_{size}.arch")
            Path(paths[size]).write_text(generated_spec(size), encoding="utf-8")
        tiny = str(Path(folder) / "tiny.arch")
        Path(tiny).write_text(generated_spec(10), encoding="utf-8")

        print(f"\n`archdsl check -q FILE` as a process (best of {repeat}):")
        header = (
            f"{'tree':<24} {'layers':>8} {'wall ms':>9} {'cpu ms':>9} {'wall ms/1k':>11} "
            f"{'cpu-fixed/1k':>13}"
        )
        print(header)
        print("-" * len(header))
        bare, bare_cpu = _process([sys.executable, "-c", "pass"], repeat)
        print(
            f"{'python -c pass':<24} {'':>8} {bare * 1e3:>9.0f} {bare_cpu * 1e3:>9.0f} "
            f"{'':>11} {'(interpreter)':>13}"
        )
        for tree in trees:
            _check_process(tree, tiny, 1)  # fills the bytecode and parser caches
            cold, cold_cpu = _check_process(tree, tiny, repeat, ARCHDSL_CACHE="")
            fixed, fixed_cpu = _check_process(tree, tiny, repeat)
            print(
                f"{tree!s:<24} {10:>8,} {cold * 1e3:>9.0f} {cold_cpu * 1e3:>9.0f} "
                f"{'':>11} {'(no parser cache)':>13}"
            )
            print(
                f"{tree!s:<24} {10:>8,} {fixed * 1e3:>9.0f} {fixed_cpu * 1e3:>9.0f} "
                f"{'':>11} {'(fixed cost)':>13}"
            )
            for size in sizes:
                wall, cpu = _check_process(tree, paths[size], repeat if size <= 20_000 else 1)
                print(
                    f"{tree!s:<24} {size:>8,} {wall * 1e3:>9.0f} {cpu * 1e3:>9.0f} "
                    f"{wall * 1e6 / size:>11.1f} {(cpu - fixed_cpu) * 1e6 / size:>13.1f}"
                )

        print(f"\nin-process split, ms (garbage collector paused, best of {repeat}):")
        header = (
            f"{'tree':<24} {'parser':<26} {'layers':>8} {'parse':>8} {'lower':>8} "
            f"{'passes':>8} {'total':>8} {'ms/1k':>9}"
        )
        print(header)
        print("-" * len(header))
        for tree in trees:
            resnet = str(SPECS / "resnet152.arch")
            rows = _stages_in(tree, [resnet, *(paths[s] for s in sizes)], backends, repeat)
            for key, (layers, t_parse, t_lower, t_passes) in rows.items():
                backend = key.split()[0] + (" (resnet152.arch)" if key.endswith(resnet) else "")
                total = t_parse + t_lower + t_passes
                print(
                    f"{tree!s:<24} {backend:<26} {layers:>8,} {t_parse * 1e3:>8.0f} "
                    f"{t_lower * 1e3:>8.0f} {t_passes * 1e3:>8.0f} {total * 1e3:>8.0f} "
                    f"{_per_k(total, layers)}"
                )


def main() -> None:
    """Run the benchmark (or, with `--stages`, one tree's in-process timings as JSON)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 20_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trees", type=Path, nargs="+", default=[HERE.parents[1]])
    parser.add_argument("--backends", nargs="+", default=["cython", "pure"])
    parser.add_argument("--stages", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stages:
        print(json.dumps(stages(args.stages, args.backends, args.repeat)))
        return
    report([t.resolve() for t in args.trees], args.sizes, args.backends, args.repeat)


if __name__ == "__main__":
    main()
