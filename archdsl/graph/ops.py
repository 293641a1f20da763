"""One frozen dataclass per layer: its attributes, shape rule, parameters and cost.

Shape rules are backend-free (JAX keeps `shape_rule` apart from lowering): the
backend reads `param_shapes`/`state_shapes` from here and never re-derives a shape.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from archdsl.graph.shapes import Padding, Shape, format_shape, resolve_padding, window_out


class ShapeRuleError(Exception):
    """Raised by `Op.infer` with a message only; the pass adds the span."""


class AttributeRuleError(Exception):
    """Raised when an op is built with attribute values it cannot take."""


def attr(kind: str, default: Any = dataclasses.MISSING, doc: str = "") -> Any:
    """Declare an op attribute; `kind` tells the binder how to read the spec's value.

    Kinds: `int`, `pair` (an int or `KxK`), `shape`, `padding`, `bool`, `float`,
    `enum:a|b|c`.
    """
    return field(default=default, metadata={"kind": kind, "doc": doc})


@dataclass(frozen=True)
class Op:
    """A layer. Attributes are dataclass fields; every subclass states its shape rule."""

    name: ClassVar[str]
    arity: ClassVar[int | None] = 1
    """How many inputs it takes; None for any number (at least one)."""
    user_visible: ClassVar[bool] = True
    """False for nodes that only constructs or passes create (add, concat, project)."""
    positional: ClassVar[tuple[str, ...]] = ()
    """Attributes that may be given by position, in order."""
    keywords: ClassVar[tuple[str, ...]] = ()
    """Attributes that may be written `word value` (`stride 2`) as well as `word = value`."""
    flags: ClassVar[Mapping[str, tuple[str, Any]]] = {}
    """Bare words that set an attribute: `same` -> `padding = "same"`."""

    def infer(self, *inputs: Shape) -> Shape:
        """The per-example output shape for these input shapes."""
        raise NotImplementedError

    def param_shapes(self, *inputs: Shape) -> dict[str, Shape]:
        """Learned tensors by leaf name; the backend initialises exactly these."""
        return {}

    def state_shapes(self, *inputs: Shape) -> dict[str, Shape]:
        """Non-learned tensors carried between steps (batch-norm running statistics)."""
        return {}

    def macs(self, output: Shape, *inputs: Shape) -> int:
        """Multiply-accumulates per example, counted as torchvision does: conv and dense."""
        return 0

    def describe(self) -> str:
        """A short rendering of the attributes for reports: `64 3x3 /2 same`."""
        parts = [
            f"{f.name}={getattr(self, f.name)}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        ]
        return " ".join(parts)


OpT = TypeVar("OpT", bound=type[Op])
OPS: dict[str, type[Op]] = {}


def register(cls: OpT) -> OpT:
    """Add an op class to `OPS` under its spec spelling."""
    OPS[cls.name] = cls
    return cls


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else value


def _fmt_pair(value: tuple[int, int]) -> str:
    return f"{value[0]}x{value[1]}"


def _fmt_padding(padding: Padding) -> str:
    if isinstance(padding, str):
        return padding
    (t, b), (left, r) = padding
    return f"pad {t}" if t == b == left == r else f"pad {padding}"


def _rank3(op: str, x: Shape) -> tuple[int, int, int]:
    if len(x) != 3:
        raise ShapeRuleError(
            f"expected an input of rank 3 (HxWxC), got {format_shape(x)} (rank {len(x)})"
        )
    return x[0], x[1], x[2]


def _positive(owner: str, **values: int | tuple[int, ...] | None) -> None:
    for key, value in values.items():
        items = value if isinstance(value, tuple) else (value,)
        if any(v is not None and v < 1 for v in items):
            raise AttributeRuleError(f"`{owner}` {key} must be positive, got {value}")


def _check_padding(owner: str, padding: Padding) -> None:
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise AttributeRuleError(
                f"`{owner}` padding must be `same`, `valid` or an integer, got `{padding}`"
            )
    elif any(p < 0 for pair in padding for p in pair):
        raise AttributeRuleError(f"`{owner}` padding must not be negative")


def _windowed(
    owner: str,
    x: Shape,
    window: tuple[int, int],
    stride: tuple[int, int],
    padding: Padding,
    dilation: tuple[int, int] = (1, 1),
    ceil_mode: bool = False,
) -> tuple[int, int]:
    h, w, _ = _rank3(owner, x)
    pads = resolve_padding(padding, (h, w), window, stride, dilation)
    span = tuple(d * (k - 1) + 1 for k, d in zip(window, dilation, strict=True))
    padded = (h + sum(pads[0]), w + sum(pads[1]))
    if span[0] > padded[0] or span[1] > padded[1]:
        raise ShapeRuleError(
            f"the {_fmt_pair(window)} window is larger than its "
            f"{padded[0]}x{padded[1]} input (after padding)"
        )
    out = tuple(
        window_out(size, k, s, p, dilation=d, ceil_mode=ceil_mode)
        for size, k, s, p, d in zip((h, w), window, stride, pads, dilation, strict=True)
    )
    if min(out) < 1:
        raise ShapeRuleError(f"the output would be {out[0]}x{out[1]}: a size went to zero")
    return out[0], out[1]


def _padding_attr() -> Any:
    return attr("padding", "valid", "`same`, `valid`, or an integer pad on every side")


@register
@dataclass(frozen=True)
class Input(Op):
    """The network's input: `() -> shape`, per example (no batch axis)."""

    name = "input"
    arity = 0
    positional = ("shape",)
    shape: Shape = attr("shape", doc="per-example shape, HxWxC or D")

    def __post_init__(self) -> None:
        _positive("input", shape=self.shape)

    def infer(self, *inputs: Shape) -> Shape:
        return self.shape

    def describe(self) -> str:
        return format_shape(self.shape)


@register
@dataclass(frozen=True)
class Conv(Op):
    """2-D convolution: `(H, W, C) -> (H', W', filters)`, kernel stored HWIO."""

    name = "conv"
    positional = ("filters", "kernel")
    keywords = ("stride", "padding", "groups", "dilation")
    flags = {"same": ("padding", "same"), "valid": ("padding", "valid")}
    filters: int = attr("int", doc="output channels")
    kernel: tuple[int, int] = attr("pair", doc="window, `5x5` or `5`")
    stride: tuple[int, int] = attr("pair", (1, 1))
    padding: Padding = _padding_attr()
    bias: bool = attr("bool", True)
    groups: int = attr("int", 1, "channel groups (AlexNet's two GPUs: 2)")
    dilation: tuple[int, int] = attr("pair", (1, 1))

    def __post_init__(self) -> None:
        _positive(
            "conv",
            filters=self.filters,
            kernel=self.kernel,
            stride=self.stride,
            groups=self.groups,
            dilation=self.dilation,
        )
        _check_padding("conv", self.padding)
        if self.filters % self.groups:
            raise AttributeRuleError(
                f"`conv` filters (={self.filters}) must be divisible by groups (={self.groups})"
            )

    def infer(self, x: Shape) -> Shape:
        c = _rank3("conv", x)[2]
        if c % self.groups:
            raise ShapeRuleError(
                f"input channels (={c}) must be divisible by groups (={self.groups})"
            )
        h, w = _windowed("conv", x, self.kernel, self.stride, self.padding, self.dilation)
        return (h, w, self.filters)

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        kernel = (*self.kernel, x[-1] // self.groups, self.filters)
        return {"kernel": kernel, "bias": (self.filters,)} if self.bias else {"kernel": kernel}

    def macs(self, output: Shape, x: Shape) -> int:
        return math.prod(output) * self.kernel[0] * self.kernel[1] * (x[-1] // self.groups)

    def describe(self) -> str:
        parts = [str(self.filters), _fmt_pair(self.kernel)]
        if self.stride != (1, 1):
            parts.append(
                f"/{self.stride[0]}"
                if self.stride[0] == self.stride[1]
                else f"/{_fmt_pair(self.stride)}"
            )
        parts.append(_fmt_padding(self.padding))
        if self.groups != 1:
            parts.append(f"groups {self.groups}")
        if self.dilation != (1, 1):
            parts.append(f"dilation {_fmt_pair(self.dilation)}")
        if not self.bias:
            parts.append("no bias")
        return " ".join(parts)


@dataclass(frozen=True)
class _Pool(Op):
    """Windowed reduction: `(H, W, C) -> (H', W', C)`; stride defaults to the window."""

    positional = ("window",)
    keywords = ("stride", "padding")
    flags = {
        "same": ("padding", "same"),
        "valid": ("padding", "valid"),
        "ceil": ("ceil", True),
    }
    window: tuple[int, int] = attr("pair", doc="window, `3x3` or `3`")
    stride: tuple[int, int] | None = attr("pair", None, "defaults to the window")
    padding: Padding = _padding_attr()
    ceil: bool = attr("bool", False, "Caffe's ceil mode: a last partial window counts")

    def __post_init__(self) -> None:
        _positive(self.name, window=self.window, stride=self.stride)
        _check_padding(self.name, self.padding)

    @property
    def strides(self) -> tuple[int, int]:
        """The stride in force: the window when none was given."""
        return self.stride or self.window

    def infer(self, x: Shape) -> Shape:
        if not isinstance(self.padding, str):
            half = (self.window[0] // 2, self.window[1] // 2)
            (top, bottom), (left, right) = self.padding
            if max(top, bottom) > half[0] or max(left, right) > half[1]:
                raise ShapeRuleError(
                    f"padding {self.padding[0][0]} is more than half the "
                    f"{_fmt_pair(self.window)} window: a window could lie wholly in the padding"
                )
        h, w = _windowed(self.name, x, self.window, self.strides, self.padding, ceil_mode=self.ceil)
        return (h, w, x[2])

    def describe(self) -> str:
        parts = [_fmt_pair(self.window), f"/{self.strides[0]}"]
        parts.append(_fmt_padding(self.padding))
        if self.ceil:
            parts.append("ceil")
        return " ".join(parts)


@register
@dataclass(frozen=True)
class MaxPool(_Pool):
    """Max pooling: `(H, W, C) -> (H', W', C)`."""

    name = "maxpool"


@register
@dataclass(frozen=True)
class AvgPool(_Pool):
    """Average pooling (padding counted, as Caffe and PyTorch): `(H, W, C) -> (H', W', C)`."""

    name = "avgpool"


@register
@dataclass(frozen=True)
class GlobalAvgPool(Op):
    """Mean over the spatial axes: `(H, W, C) -> (C,)`."""

    name = "globalavgpool"

    def infer(self, x: Shape) -> Shape:
        return (_rank3(self.name, x)[2],)


@register
@dataclass(frozen=True)
class GlobalMaxPool(Op):
    """Max over the spatial axes: `(H, W, C) -> (C,)`."""

    name = "globalmaxpool"

    def infer(self, x: Shape) -> Shape:
        return (_rank3(self.name, x)[2],)


@register
@dataclass(frozen=True)
class Flatten(Op):
    """All axes into one: `(H, W, C) -> (H*W*C,)`."""

    name = "flatten"

    def infer(self, x: Shape) -> Shape:
        return (math.prod(x),)


@register
@dataclass(frozen=True)
class Dense(Op):
    """Affine map over the last axis: `(..., d) -> (..., units)`."""

    name = "dense"
    positional = ("units",)
    units: int = attr("int", doc="output features")
    bias: bool = attr("bool", True)

    def __post_init__(self) -> None:
        _positive("dense", units=self.units)

    def infer(self, x: Shape) -> Shape:
        return (*x[:-1], self.units)

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        kernel = (x[-1], self.units)
        return {"kernel": kernel, "bias": (self.units,)} if self.bias else {"kernel": kernel}

    def macs(self, output: Shape, x: Shape) -> int:
        return math.prod(output) * x[-1]

    def describe(self) -> str:
        return str(self.units) + ("" if self.bias else " no bias")


@register
@dataclass(frozen=True)
class Dropout(Op):
    """Zero a fraction `rate` of activations in training: shape unchanged."""

    name = "dropout"
    positional = ("rate",)
    rate: float = attr("float", 0.5, "the fraction dropped, in [0, 1)")

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate < 1.0:
            raise AttributeRuleError(f"`dropout` rate must be in [0, 1), got {self.rate}")

    def infer(self, x: Shape) -> Shape:
        return x

    def describe(self) -> str:
        return str(self.rate)


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
        _positive("lrn", size=self.size)

    def infer(self, x: Shape) -> Shape:
        _rank3(self.name, x)
        return x

    def describe(self) -> str:
        return f"size {self.size}"


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


@register
@dataclass(frozen=True)
class LeakyRelu(Activation):
    """max(x, slope * x): shape unchanged."""

    name = "leaky_relu"
    positional = ("slope",)
    slope: float = attr("float", 0.01)


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
class Add(Op):
    """Elementwise sum of branches with equal shapes (`add { branch ... }`)."""

    name = "add"
    arity = None
    user_visible = False

    def infer(self, *inputs: Shape) -> Shape:
        _same_shapes("add", inputs)
        return inputs[0]


@register
@dataclass(frozen=True)
class Concat(Op):
    """Concatenation on channels (`concat { branch ... }`): spatial sizes must agree."""

    name = "concat"
    arity = None
    user_visible = False

    def infer(self, *inputs: Shape) -> Shape:
        first = inputs[0]
        for index, other in enumerate(inputs[1:], start=2):
            if len(other) != len(first) or other[:-1] != first[:-1]:
                raise ShapeRuleError(
                    f"branch {index} gives {format_shape(other)}, but branch 1 gives "
                    f"{format_shape(first)}: all but the channels must agree"
                )
        return (*first[:-1], sum(s[-1] for s in inputs))


SHORTCUTS = ("auto", "projection", "zeropad", "identity")


@register
@dataclass(frozen=True)
class Residual(Op):
    """`out = body + shortcut`: inputs are (body output, shortcut), output has the body's shape.

    Operand shapes may differ until `insert_projections` has run; `verify` then
    requires them equal.
    """

    name = "residual"
    arity = 2
    user_visible = False
    shortcut: str = attr("enum:auto|projection|zeropad|identity", "auto")

    def infer(self, body: Shape, shortcut: Shape) -> Shape:
        return body

    def describe(self) -> str:
        return f"shortcut {self.shortcut}"


@register
@dataclass(frozen=True)
class Project(Op):
    """The Ws projection of a residual shortcut: 1x1 conv with stride, then batch norm.

    `(H, W, C) -> (H / stride, W / stride, filters)`.
    """

    name = "project"
    user_visible = False
    filters: int = attr("int")
    stride: tuple[int, int] = attr("pair", (1, 1))
    batchnorm: bool = attr("bool", True)

    def infer(self, x: Shape) -> Shape:
        if len(x) == 1:
            return (self.filters,)
        h, w = _windowed("project", x, (1, 1), self.stride, "valid")
        return (h, w, self.filters)

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        kernel = (x[-1], self.filters) if len(x) == 1 else (1, 1, x[-1], self.filters)
        if self.batchnorm:
            return {"kernel": kernel, "scale": (self.filters,), "bias": (self.filters,)}
        return {"kernel": kernel, "bias": (self.filters,)}

    def state_shapes(self, x: Shape) -> dict[str, Shape]:
        return {"mean": (self.filters,), "var": (self.filters,)} if self.batchnorm else {}

    def macs(self, output: Shape, x: Shape) -> int:
        return math.prod(output) * x[-1]

    def describe(self) -> str:
        return f"{self.filters} 1x1 /{self.stride[0]}" + (" +bn" if self.batchnorm else "")


@register
@dataclass(frozen=True)
class ZeroPad(Op):
    """The parameter-free shortcut: subsample by `stride`, pad channels with zeros."""

    name = "zeropad"
    user_visible = False
    filters: int = attr("int")
    stride: tuple[int, int] = attr("pair", (1, 1))

    def infer(self, x: Shape) -> Shape:
        if len(x) == 1:
            return (self.filters,)
        h, w, _ = _rank3("zeropad", x)
        return (-(-h // self.stride[0]), -(-w // self.stride[1]), self.filters)

    def describe(self) -> str:
        return f"{self.filters} /{self.stride[0]}"
