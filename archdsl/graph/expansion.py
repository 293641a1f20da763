"""How many layers a spec expands to, bounded before anything is built.

`repeat 100000 { ... }` must be refused before the lowering builds it: `min_nodes` is a
lower bound of the layers a body makes, computed from the syntax alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from archdsl.errors import ArchError
from archdsl.lang import syntax as s
from archdsl.lang.loader import Program
from archdsl.lang.values import Value, evaluate

MAX_NODES = 500_000
"""A spec that expands past this many layers is refused before anything is built."""
MAX_BLOCK_DEPTH = 64
"""Blocks calling blocks deeper than this are refused (the lowering recurses per level)."""


def min_nodes(
    body: Sequence[s.Stmt], env: Mapping[str, Value] | None, program: Program, depth: int = 0
) -> int:
    """A lower bound on the nodes `body` makes, computed without building anything.

    Counts layers, and multiplies by `repeat` counts that are literals or known in `env`
    (inside a called block the arguments are unknown, so only literals count). Being a
    lower bound, a refusal based on it is never wrong.
    """
    if depth > MAX_BLOCK_DEPTH:
        return 0
    total = 0
    for stmt in body:
        if isinstance(stmt, s.Aux):
            total += min_nodes(stmt.body, env, program, depth + 1)
        if not isinstance(stmt, s.Chain):
            continue
        for step in stmt.steps:
            total += _min_step_nodes(step, env, program, depth)
            if total > MAX_NODES:
                return total
    return total


def _min_step_nodes(
    step: s.Step, env: Mapping[str, Value] | None, program: Program, depth: int
) -> int:
    if isinstance(step, s.Call):
        block = program.definitions.get(step.op.text)
        if isinstance(block, s.BlockDef):
            return min_nodes(block.body, None, program, depth + 1)
        return 1
    if isinstance(step, s.Repeat):
        try:
            count = (
                evaluate(step.count, env) if env is not None or isinstance(step.count, s.Int) else 0
            )
        except ArchError:
            count = 0
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            return 0
        return count * min_nodes(step.body, env, program, depth + 1)
    if isinstance(step, s.Merge):
        return 1 + sum(min_nodes(b.body, env, program, depth + 1) for b in step.branches)
    extra = 1 if isinstance(step, s.Residual) else 0
    return extra + min_nodes(step.body, env, program, depth + 1)
