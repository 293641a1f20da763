"""Fuzz a spec over its declared ranges: draw arguments, compile each instance, shrink a failure.

Requires the hypothesis package. `archdsl fuzz spec.arch` is the command-line face;
`fuzz_file` and `fuzz_network` are the API.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed

from archdsl.errors import ArchError
from archdsl.frontend import build_program_graph
from archdsl.graph.lower import select_network
from archdsl.lang import syntax as s
from archdsl.lang.loader import Program, load_file
from archdsl.lang.values import Value, describe, evaluate
from archdsl.testing import backend_available, check_backend, params_strategy
from archdsl.tools.fmt import format_expr

MINIMISE_TRIES = 64
"""After hypothesis shrinks, this many more instances may be tried to reach the smallest."""

Kind = Literal["spec", "backend", "crash"]


@dataclass(frozen=True)
class Failure:
    """A failing instance: its arguments and what went wrong."""

    arguments: Mapping[str, Value]
    kind: Kind
    """`spec`: the front end rejects it (an `ArchError`); `backend`: the compiled
    model disagrees with the front end; `crash`: an internal error (a bug in archdsl)."""
    message: str
    """The diagnostic, as `archdsl compile` prints it, or the traceback for a crash."""


@dataclass(frozen=True)
class FuzzResult:
    """What fuzzing one network found."""

    path: str
    network: str
    ranges: Mapping[str, str] = field(default_factory=dict)
    """Each ranged parameter's declared range, as written (`32..512`)."""
    tried: int = 0
    """Distinct argument sets compiled (the default arguments when there are no ranges)."""
    backend: bool = False
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        """No failing instance was found."""
        return self.failure is None


class _Found(Exception):
    """Raised inside the hypothesis test so that hypothesis shrinks the failure."""


def fuzz_file(
    path: str | Path,
    *,
    network: str | None = None,
    max_examples: int = 100,
    seed: int | None = None,
    backend: bool = False,
) -> list[FuzzResult]:
    """Fuzz every network of a file (or the one named); a file of blocks gives `[]`.

    Raises:
        ArchError: the file does not load, or a network cannot be fuzzed (a parameter
            with neither default nor range; a range that is not two numbers).
    """
    program = load_file(path)
    if network is not None:
        names = [select_network(program, network).name.text]
    else:
        names = [n.name.text for n in program.networks]  # none in a file of blocks
    return [
        fuzz_network(
            program, str(path), name, max_examples=max_examples, seed=seed, backend=backend
        )
        for name in names
    ]


def fuzz_network(
    program: Program,
    path: str,
    network: str,
    *,
    max_examples: int = 100,
    seed: int | None = None,
    backend: bool = False,
) -> FuzzResult:
    """Compile instances of one network drawn from its ranges; shrink the first failure.

    Args:
        program: the loaded file (`loader.load_file`).
        path: its path (for the backend, which loads the file itself).
        network: the network's name.
        max_examples: how many instances hypothesis draws at most.
        seed: fixes the draws; None draws differently each run.
        backend: also trace each instance with `jax.eval_shape` and compare.
    """
    definition = select_network(program, network)
    if backend and not backend_available():
        raise RuntimeError("the JAX backend (archdsl.compiler) is not available")
    ranges = {
        p.name.text: f"{format_expr(p.low)}..{format_expr(p.high)}"
        for p in definition.params
        if p.low is not None and p.high is not None
    }
    strategy = params_strategy(definition)
    tried: set[tuple[tuple[str, Value], ...]] = set()
    found: list[Failure] = []

    def attempt(arguments: dict[str, Value]) -> Failure | None:
        tried.add(tuple(sorted(arguments.items())))
        return _compile(program, path, network, arguments, backend)

    def test(arguments: dict[str, Value]) -> None:
        failure = attempt(arguments)
        if failure is not None:
            found.append(failure)
            raise _Found()

    if not ranges:
        failure = attempt({})
        return FuzzResult(path, network, ranges, len(tried), backend, failure)

    run = settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        derandomize=False,
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
    )(given(strategy)(test))
    if seed is not None:
        run = hypothesis_seed(seed)(run)
    with contextlib.suppress(_Found):
        run()
    if not found:
        return FuzzResult(path, network, ranges, len(tried), backend, None)
    failure = _minimise(found[-1], definition, attempt)
    return FuzzResult(path, network, ranges, len(tried), backend, failure)


def _compile(
    program: Program, path: str, network: str, arguments: dict[str, Value], backend: bool
) -> Failure | None:
    try:
        graph = build_program_graph(program, network, arguments)
    except ArchError as error:
        return Failure(dict(arguments), "spec", str(error))
    except Exception:  # a crash is what we look for
        return Failure(dict(arguments), "crash", traceback.format_exc())
    if not backend:
        return None
    try:
        check_backend(path, graph)
    except AssertionError as error:
        return Failure(dict(arguments), "backend", str(error))
    except Exception:
        return Failure(dict(arguments), "backend", traceback.format_exc())
    return None


def _minimise(
    failure: Failure,
    definition: s.NetworkDef,
    attempt: Callable[[dict[str, Value]], Failure | None],
) -> Failure:
    """Lower each integer argument to the smallest value that still fails, others fixed.

    Hypothesis' shrinker is heuristic; a scan from the low end of each range makes
    "the smallest failing value" exact when it is within `MINIMISE_TRIES` of it.
    """
    budget = MINIMISE_TRIES
    current = failure
    for param in definition.params:
        name = param.name.text
        value = current.arguments.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or param.low is None:
            continue
        env: dict[str, Value] = {}
        for p in definition.params:
            if p.name.text == name:
                break
            if p.name.text in current.arguments:
                env[p.name.text] = current.arguments[p.name.text]
            elif p.default is not None:
                env[p.name.text] = evaluate(p.default, env)
        low = evaluate(param.low, env)
        if not isinstance(low, int):
            continue
        for candidate in range(low, value):
            if budget <= 0:
                return current
            budget -= 1
            arguments = {**current.arguments, name: candidate}
            smaller = attempt(arguments)
            if smaller is not None and smaller.kind == current.kind:
                current = smaller
                break
    return current


def format_result(result: FuzzResult) -> str:
    """The report `archdsl fuzz` prints for one network."""
    where = f"{result.path}: network `{result.network}`"
    ranges = ", ".join(f"{name} in {span}" for name, span in result.ranges.items())
    checked = "compiled" + (" and traced with jax.eval_shape" if result.backend else "")
    if result.failure is None:
        if not result.ranges:
            return f"ok  {where} declares no ranges; {checked} its default arguments (1 instance)"
        plural = "s" if result.tried != 1 else ""
        return f"ok  {where}: {checked} {result.tried} instance{plural} ({ranges}), all clean"
    failure = result.failure
    lines = [f"FAIL {where}"]
    if result.ranges:
        lines.append(f"  {result.tried} instances tried ({ranges}); the smallest failing:")
        shown = ", ".join(f"{k} = {describe(v)}" for k, v in failure.arguments.items())
        lines.append(f"    {shown}")
    else:
        lines.append("  its default arguments fail:")
    if failure.kind == "crash":
        lines.append("  archdsl crashed (a bug in archdsl, not in the spec; please report it):")
    elif failure.kind == "backend":
        lines.append("  the JAX backend disagrees with the front end (a bug in archdsl):")
    lines.append(failure.message.rstrip())
    args = "".join(f" --arg {k}={describe(v).strip('`')}" for k, v in failure.arguments.items())
    lines.append(f"  reproduce: archdsl compile {result.path} --network {result.network}{args}")
    return "\n".join(lines)
