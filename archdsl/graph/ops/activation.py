"""Activations: elementwise non-linearities, shape unchanged."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from archdsl.graph.ops.base import Op, attr, register
from archdsl.graph.shapes import Shape


@dataclass(frozen=True)
class Activation(Op):
    """An elementwise non-linearity: shape unchanged."""

    def infer(self, x: Shape) -> Shape:
        return x

    def describe(self) -> str:
        return ""


def _activation(spelling: str, doc: str) -> type[Activation]:
    cls = dataclasses.make_dataclass(
        spelling.title().replace("_", ""),
        [],
        bases=(Activation,),
        frozen=True,
        namespace={"name": spelling, "__doc__": doc, "__module__": __name__},
    )
    return register(cls)


Relu = _activation("relu", "max(x, 0).")
Relu6 = _activation("relu6", "min(max(x, 0), 6).")
Tanh = _activation("tanh", "Hyperbolic tangent (LeNet-5).")
Sigmoid = _activation("sigmoid", "Logistic function.")
Softmax = _activation("softmax", "Softmax over the last axis.")
LogSoftmax = _activation("log_softmax", "Log of the softmax over the last axis.")
Gelu = _activation("gelu", "Gaussian error linear unit.")
Silu = _activation("silu", "x * sigmoid(x), also called swish.")
Elu = _activation("elu", "Exponential linear unit (alpha 1).")
Identity = _activation("identity", "The input, unchanged.")
Hardswish = _activation("hardswish", "x * relu6(x + 3) / 6, as PyTorch's (MobileNetV3).")
Hardsigmoid = _activation(
    "hardsigmoid", "relu6(x + 3) / 6, as PyTorch's (MobileNetV3's squeeze-and-excitation gate)."
)


@register
@dataclass(frozen=True)
class LeakyRelu(Activation):
    """max(x, slope * x): shape unchanged."""

    name = "leaky_relu"
    positional = ("slope",)
    slope: float = attr("float", 0.01)
