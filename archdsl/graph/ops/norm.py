"""Normalisation: batch norm (with running statistics) and local response norm."""

from __future__ import annotations

from dataclasses import dataclass

from archdsl.graph.ops.base import AttributeRuleError, Op, attr, positive, rank3, register
from archdsl.graph.shapes import Shape


@register
@dataclass(frozen=True)
class BatchNorm(Op):
    """Batch normalisation over the last axis, with running statistics: shape unchanged.

    `momentum` follows flax: running = momentum * running + (1 - momentum) * batch.
    """

    name = "batchnorm"
    eps: float = attr("float", 1e-5)
    momentum: float = attr("float", 0.9)

    def __post_init__(self) -> None:
        if not 0.0 <= self.momentum < 1.0 or self.eps <= 0:
            raise AttributeRuleError(
                f"`batchnorm` needs 0 <= momentum < 1 and eps > 0, "
                f"got momentum={self.momentum}, eps={self.eps}"
            )

    def infer(self, x: Shape) -> Shape:
        return x

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        return {"scale": (x[-1],), "bias": (x[-1],)}

    def state_shapes(self, x: Shape) -> dict[str, Shape]:
        return {"mean": (x[-1],), "var": (x[-1],)}

    def describe(self) -> str:
        return ""


@register
@dataclass(frozen=True)
class LRN(Op):
    """Local response normalisation across channels (AlexNet): shape unchanged.

    `b = a / (k + alpha / size * sum(a^2 over size channels)) ** beta`, as Caffe and PyTorch.
    """

    name = "lrn"
    positional = ("size",)
    size: int = attr("int", 5, "channels in the sum")
    alpha: float = attr("float", 1e-4)
    beta: float = attr("float", 0.75)
    k: float = attr("float", 2.0)

    def __post_init__(self) -> None:
        positive("lrn", size=self.size)

    def infer(self, x: Shape) -> Shape:
        rank3(self.name, x)
        return x

    def describe(self) -> str:
        return f"size {self.size}"
