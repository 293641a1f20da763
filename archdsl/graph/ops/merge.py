"""Merges: ops that join the branches of `NAME { branch ... }` into one output.

The grammar names no merge: `concat { ... }`, `add { ... }` and `multiply { ... }` all parse
through one rule, and the lowering looks the name up in `OPS`. Any `Merge` subclass
registered here is usable that way at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archdsl.graph.ops.base import Op, ShapeRuleError, register
from archdsl.graph.shapes import Shape, format_shape


@dataclass(frozen=True)
class Merge(Op):
    """An op that takes any number of branches (at least two), written `NAME { branch ... }`."""

    arity = None
    user_visible = False


def _same_shapes(kind: str, inputs: tuple[Shape, ...]) -> None:
    first = inputs[0]
    for index, other in enumerate(inputs[1:], start=2):
        if other != first:
            raise ShapeRuleError(
                f"cannot {kind} {format_shape(other)} (branch {index}) "
                f"to {format_shape(first)} (branch 1)"
            )


@register
@dataclass(frozen=True)
class Add(Merge):
    """Elementwise sum of branches with equal shapes (`add { branch ... }`)."""

    name = "add"

    def infer(self, *inputs: Shape) -> Shape:
        _same_shapes("add", inputs)
        return inputs[0]


@register
@dataclass(frozen=True)
class Concat(Merge):
    """Concatenation on channels (`concat { branch ... }`): spatial sizes must agree."""

    name = "concat"

    def infer(self, *inputs: Shape) -> Shape:
        first = inputs[0]
        for index, other in enumerate(inputs[1:], start=2):
            if len(other) != len(first) or other[:-1] != first[:-1]:
                raise ShapeRuleError(
                    f"branch {index} gives {format_shape(other)}, but branch 1 gives "
                    f"{format_shape(first)}: all but the channels must agree"
                )
        return (*first[:-1], sum(s[-1] for s in inputs))


@register
@dataclass(frozen=True)
class Multiply(Merge):
    """Elementwise product (`multiply { branch ... }`), as squeeze-and-excitation gates.

    Every branch has the shape of the widest (highest rank, then most values, then first),
    or is a per-channel gate broadcast over it: a vector `C` or a `1x1xC` map, where `C`
    is the widest branch's channel count. The output has the widest branch's shape.
    """

    name = "multiply"

    def infer(self, *inputs: Shape) -> Shape:
        widest = max(range(len(inputs)), key=lambda i: (len(inputs[i]), math.prod(inputs[i]), -i))
        full = inputs[widest]
        for index, other in enumerate(inputs):
            if not broadcasts(other, full):
                raise ShapeRuleError(
                    f"cannot multiply {format_shape(other)} (branch {index + 1}) with "
                    f"{format_shape(full)} (branch {widest + 1}): a branch must have the "
                    f"same shape, or be a per-channel gate `{full[-1]}` or `1x1x{full[-1]}`"
                )
        return full


def broadcasts(gate: Shape, full: Shape) -> bool:
    """Whether `gate` multiplies `full` elementwise: equal, or a per-channel `C` / `1x1xC`."""
    if gate == full:
        return True
    if gate[-1:] != full[-1:]:
        return False
    return len(gate) == 1 or (len(gate) == len(full) and all(d == 1 for d in gate[:-1]))
