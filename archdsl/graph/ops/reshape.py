"""Reshapes: ops that move values between axes without computing."""

from __future__ import annotations

import math
from dataclasses import dataclass

from archdsl.graph.ops.base import Op, register
from archdsl.graph.shapes import Shape


@register
@dataclass(frozen=True)
class Flatten(Op):
    """All axes into one: `(H, W, C) -> (H*W*C,)`."""

    name = "flatten"
    signature = "`(H, W, C) -> (H*W*C,)`"

    def infer(self, x: Shape) -> Shape:
        return (math.prod(x),)
