"""Write a checked graph as an ONNX model: one converter per op, inference mode.

The ONNX model takes and returns what `CompiledModel.apply` does: a float32 batch
`(N, *input_shape)`, NHWC, with `N` symbolic. Inside, images are NCHW, the layout
ONNX's `Conv` and pooling want: a `Transpose` at the input, one before `flatten` (so
the flattened rows keep archdsl's H, W, C order and the dense weights carry over
as they are) and one at the output when it is an image. Only the main output's
ancestors are written (auxiliary heads are training-only); dropout is the identity
and batch norm uses its running statistics.

Each ONNX node is named after the archdsl layer it comes from: the node that
produces a layer's value carries the layer's name, helper nodes `layer/role`.
Initializers are `layer.leaf`, as in weights files, in ONNX's layout (OIHW kernels).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from archdsl.backend.lowerings.pool import _pool_geometry, _window_counts
from archdsl.backend.weights import write_atomic
from archdsl.errors import ArchError
from archdsl.graph import ops
from archdsl.graph.ir import Graph
from archdsl.graph.shapes import Shape, resolve_padding

OPSET = 17
"""The ONNX opset written: 17 has every op used here (LayerNormalization is not needed)."""

BATCH = "N"
"""The symbolic batch dimension's name."""


class ArchOnnxError(ArchError):
    """A network or file that cannot be written as ONNX."""


@dataclass
class Builder:
    """Collects ONNX nodes and initializers while the converters run, in graph order."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    _names: set[str] = field(default_factory=set)

    def fresh(self, base: str) -> str:
        """A tensor name not used yet, `base` itself when free."""
        name, n = base, 1
        while name in self._names:
            n += 1
            name = f"{base}/{n}"
        self._names.add(name)
        return name

    def constant(self, name: str, value: np.ndarray) -> str:
        """Add an initializer; returns its (possibly suffixed) name."""
        name = self.fresh(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def ints(self, name: str, values: list[int] | tuple[int, ...]) -> str:
        """An int64 initializer (shapes, axes, pads)."""
        return self.constant(name, np.asarray(values, np.int64))

    def node(
        self, op_type: str, inputs: list[str], name: str, *, output: str | None = None, **attrs: Any
    ) -> str:
        """Add one node named `name`; returns its output tensor (named `output` or `name`)."""
        out = self.fresh(output or name)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out


@dataclass(frozen=True)
class Layer:
    """What a converter gets for one archdsl node."""

    name: str
    op: Any
    inputs: tuple[str, ...]
    """The ONNX tensors holding the node's inputs, images NCHW."""
    in_shapes: tuple[Shape, ...]
    """archdsl's per-example input shapes (H, W, C) or (D,)."""
    out_shape: Shape
    params: Mapping[str, np.ndarray]
    state: Mapping[str, np.ndarray]

    def helper(self, role: str) -> str:
        """The name of a helper node of this layer."""
        return f"{self.name}/{role}"


Converter: TypeAlias = Callable[[Builder, Layer], str]
"""`(builder, layer) -> the ONNX tensor holding the layer's output`."""

CONVERTERS: dict[type[ops.Op], Converter] = {}
"""One converter per op class, as `LOWERINGS`."""


def converts(*classes: type[ops.Op]) -> Callable[[Converter], Converter]:
    """Register a converter for the op classes `classes`."""

    def register(fn: Converter) -> Converter:
        for cls in classes:
            CONVERTERS[cls] = fn
        return fn

    return register


def _image(shape: Shape) -> bool:
    return len(shape) == 3


def _channel_axis(shape: Shape) -> int:
    """The channel axis of the ONNX tensor for a per-example `shape` (NCHW for images)."""
    return 1 if _image(shape) else len(shape)


def _onnx_pads(pads: tuple[tuple[int, int], ...] | list[tuple[int, int]]) -> list[int]:
    """archdsl's `((top, bottom), (left, right))` as ONNX's `[top, left, bottom, right]`."""
    return [p[0] for p in pads] + [p[1] for p in pads]


def _conv_kernel(kernel: np.ndarray) -> np.ndarray:
    """HWIO to ONNX's OIHW."""
    return np.transpose(kernel, (3, 2, 0, 1))


@converts(ops.Input)
def _input(b: Builder, layer: Layer) -> str:
    return layer.inputs[0]


@converts(ops.Conv)
def _conv(b: Builder, layer: Layer) -> str:
    op: ops.Conv = layer.op
    pads = resolve_padding(op.padding, layer.in_shapes[0][:2], op.kernel, op.stride, op.dilation)
    inputs = [
        layer.inputs[0],
        b.constant(f"{layer.name}.kernel", _conv_kernel(layer.params["kernel"])),
    ]
    if "bias" in layer.params:
        inputs.append(b.constant(f"{layer.name}.bias", layer.params["bias"]))
    return b.node(
        "Conv",
        inputs,
        layer.name,
        kernel_shape=list(op.kernel),
        strides=list(op.stride),
        pads=_onnx_pads(pads),
        dilations=list(op.dilation),
        group=op.groups,
    )


def _crop(b: Builder, layer: Layer, x: str, pads: list[tuple[int, int]]) -> tuple[str, list]:
    """Crop trailing rows/columns no window reads (a negative high pad), as JAX does."""
    ends = [layer.in_shapes[0][axis] + min(hi, 0) for axis, (_, hi) in enumerate(pads)]
    if all(hi >= 0 for _, hi in pads):
        return x, pads
    x = b.node(
        "Slice",
        [
            x,
            b.ints(f"{layer.name}/starts", [0, 0]),
            b.ints(f"{layer.name}/ends", ends),
            b.ints(f"{layer.name}/axes", [2, 3]),
        ],
        layer.helper("crop"),
    )
    return x, [(lo, max(hi, 0)) for lo, hi in pads]


@converts(ops.MaxPool)
def _maxpool(b: Builder, layer: Layer) -> str:
    op: ops.MaxPool = layer.op
    pads, _ = _pool_geometry(op, layer.in_shapes[0], layer.out_shape)
    x, pads = _crop(b, layer, layer.inputs[0], pads)
    return b.node(
        "MaxPool",
        [x],
        layer.name,
        kernel_shape=list(op.window),
        strides=list(op.strides),
        pads=_onnx_pads(pads),
    )


@converts(ops.AvgPool)
def _avgpool(b: Builder, layer: Layer) -> str:
    """Average with padding counted but not the ceil overhang, as PyTorch and the JAX lowering.

    `AveragePool` with `count_include_pad` divides by the full window everywhere; where
    a window hangs over the end (ceil mode) a constant rescales it to the true count.
    """
    op: ops.AvgPool = layer.op
    x_shape = layer.in_shapes[0]
    pads, explicit = _pool_geometry(op, x_shape, layer.out_shape)
    x, pads = _crop(b, layer, layer.inputs[0], pads)
    rows, cols = (
        _window_counts(size, window, stride, pad, out)
        for size, window, stride, pad, out in zip(
            x_shape[:2], op.window, op.strides, explicit, layer.out_shape[:2], strict=True
        )
    )
    counts = np.outer(rows, cols)
    full = op.window[0] * op.window[1]
    exact = bool(np.all(counts == full))
    y = b.node(
        "AveragePool",
        [x],
        layer.name if exact else layer.helper("pool"),
        kernel_shape=list(op.window),
        strides=list(op.strides),
        pads=_onnx_pads(pads),
        count_include_pad=1,
    )
    if exact:
        return y
    scale = b.constant(f"{layer.name}/count", (full / counts)[None, None].astype(np.float32))
    return b.node("Mul", [y, scale], layer.name)


@converts(ops.GlobalAvgPool, ops.GlobalMaxPool)
def _global_pool(b: Builder, layer: Layer) -> str:
    kind = "GlobalAveragePool" if isinstance(layer.op, ops.GlobalAvgPool) else "GlobalMaxPool"
    y = b.node(kind, [layer.inputs[0]], layer.helper("pool"))
    return b.node("Flatten", [y], layer.name, axis=1)


@converts(ops.Flatten)
def _flatten(b: Builder, layer: Layer) -> str:
    x = layer.inputs[0]
    if _image(layer.in_shapes[0]):
        # archdsl flattens H, W, C: go back to NHWC first so the rows keep that order.
        x = b.node("Transpose", [x], layer.helper("nhwc"), perm=[0, 2, 3, 1])
    return b.node("Flatten", [x], layer.name, axis=1)


@converts(ops.Dense)
def _dense(b: Builder, layer: Layer) -> str:
    kernel = b.constant(f"{layer.name}.kernel", layer.params["kernel"])
    x = layer.inputs[0]
    if len(layer.in_shapes[0]) == 1:
        inputs = [x, kernel]
        if "bias" in layer.params:
            inputs.append(b.constant(f"{layer.name}.bias", layer.params["bias"]))
        return b.node("Gemm", inputs, layer.name)
    # Dense over the channels of an image: in NHWC, then back.
    image = _image(layer.in_shapes[0])
    if image:
        x = b.node("Transpose", [x], layer.helper("nhwc"), perm=[0, 2, 3, 1])
    has_bias = "bias" in layer.params
    y = b.node("MatMul", [x, kernel], layer.helper("matmul") if has_bias or image else layer.name)
    if has_bias:
        bias = b.constant(f"{layer.name}.bias", layer.params["bias"])
        y = b.node("Add", [y, bias], layer.helper("bias") if image else layer.name)
    if image:
        y = b.node("Transpose", [y], layer.name, perm=[0, 3, 1, 2])
    return y


@converts(ops.Dropout, ops.Identity)
def _identity(b: Builder, layer: Layer) -> str:
    return b.node("Identity", [layer.inputs[0]], layer.name)


def _batch_norm(
    b: Builder, layer: Layer, x: str, eps: float, scale: str = "scale", name: str | None = None
) -> str:
    p, s = layer.params, layer.state
    inputs = [
        x,
        b.constant(f"{layer.name}.{scale}", p[scale]),
        b.constant(f"{layer.name}.bias", p["bias"]),
        b.constant(f"{layer.name}.mean", s["mean"]),
        b.constant(f"{layer.name}.var", s["var"]),
    ]
    return b.node("BatchNormalization", inputs, name or layer.name, epsilon=eps)


@converts(ops.BatchNorm)
def _batchnorm(b: Builder, layer: Layer) -> str:
    return _batch_norm(b, layer, layer.inputs[0], layer.op.eps)


@converts(ops.LRN)
def _lrn(b: Builder, layer: Layer) -> str:
    """ONNX `LRN` for odd sizes; for even ones its window is centred the other way.

    PyTorch (and archdsl) sum channels `c - size//2 .. c + (size-1)//2`; ONNX sums
    `c - (size-1)//2 .. c + ceil((size-1)/2)`: equal for odd sizes only. For an even
    size the sum is a 1x1 convolution of the squares with a band of ones.
    """
    op: ops.LRN = layer.op
    x = layer.inputs[0]
    if op.size % 2:
        return b.node("LRN", [x], layer.name, size=op.size, alpha=op.alpha, beta=op.beta, bias=op.k)
    c = layer.in_shapes[0][2]
    index = np.arange(c)
    band = (index[None, :] >= index[:, None] - op.size // 2) & (
        index[None, :] <= index[:, None] + (op.size - 1) // 2
    )
    weights = b.constant(f"{layer.name}/band", band.astype(np.float32)[:, :, None, None])
    squares = b.node("Mul", [x, x], layer.helper("square"))
    sums = b.node("Conv", [squares, weights], layer.helper("sum"), kernel_shape=[1, 1])
    alpha = b.constant(f"{layer.name}/alpha", np.float32(op.alpha / op.size))
    k = b.constant(f"{layer.name}/k", np.float32(op.k))
    beta = b.constant(f"{layer.name}/beta", np.float32(op.beta))
    scaled = b.node("Mul", [sums, alpha], layer.helper("scale"))
    base = b.node("Add", [scaled, k], layer.helper("k"))
    denominator = b.node("Pow", [base, beta], layer.helper("pow"))
    return b.node("Div", [x, denominator], layer.name)


_ELEMENTWISE: dict[type[ops.Op], tuple[str, dict[str, Any]]] = {
    ops.Relu: ("Relu", {}),
    ops.Tanh: ("Tanh", {}),
    ops.Sigmoid: ("Sigmoid", {}),
    ops.Elu: ("Elu", {"alpha": 1.0}),
    # PyTorch's relu6(x + 3) / 6 is ONNX's max(0, min(1, x / 6 + 1 / 2)).
    ops.Hardsigmoid: ("HardSigmoid", {"alpha": 1.0 / 6.0, "beta": 0.5}),
    ops.Hardswish: ("HardSwish", {}),
}


@converts(*_ELEMENTWISE)
def _elementwise(b: Builder, layer: Layer) -> str:
    kind, attrs = _ELEMENTWISE[type(layer.op)]
    return b.node(kind, [layer.inputs[0]], layer.name, **attrs)


@converts(ops.LeakyRelu)
def _leaky_relu(b: Builder, layer: Layer) -> str:
    return b.node("LeakyRelu", [layer.inputs[0]], layer.name, alpha=layer.op.slope)


@converts(ops.Relu6)
def _relu6(b: Builder, layer: Layer) -> str:
    low = b.constant(f"{layer.name}/min", np.float32(0.0))
    high = b.constant(f"{layer.name}/max", np.float32(6.0))
    return b.node("Clip", [layer.inputs[0], low, high], layer.name)


@converts(ops.Softmax, ops.LogSoftmax)
def _softmax(b: Builder, layer: Layer) -> str:
    kind = "Softmax" if isinstance(layer.op, ops.Softmax) else "LogSoftmax"
    # archdsl's softmax is over the last axis, the channels: axis 1 in NCHW.
    axis = _channel_axis(layer.out_shape)
    return b.node(kind, [layer.inputs[0]], layer.name, axis=axis)


@converts(ops.Gelu)
def _gelu(b: Builder, layer: Layer) -> str:
    """The exact erf form, `x * (1 + erf(x / sqrt 2)) / 2`: `Gelu` needs opset 20."""
    x = layer.inputs[0]
    root = b.constant(f"{layer.name}/sqrt2", np.float32(np.sqrt(2.0)))
    one = b.constant(f"{layer.name}/one", np.float32(1.0))
    half = b.constant(f"{layer.name}/half", np.float32(0.5))
    erf = b.node("Erf", [b.node("Div", [x, root], layer.helper("div"))], layer.helper("erf"))
    gate = b.node(
        "Mul", [b.node("Add", [erf, one], layer.helper("add")), half], layer.helper("gate")
    )
    return b.node("Mul", [x, gate], layer.name)


@converts(ops.Silu)
def _silu(b: Builder, layer: Layer) -> str:
    x = layer.inputs[0]
    return b.node("Mul", [x, b.node("Sigmoid", [x], layer.helper("sigmoid"))], layer.name)


@converts(ops.Add, ops.Residual)
def _add(b: Builder, layer: Layer) -> str:
    if len(layer.inputs) == 1:
        return b.node("Identity", list(layer.inputs), layer.name)
    total = layer.inputs[0]
    last = len(layer.inputs) - 1
    for index, x in enumerate(layer.inputs[1:], start=1):
        name = layer.name if index == last else layer.helper(f"add{index}")
        total = b.node("Add", [total, x], name)
    return total


@converts(ops.Multiply)
def _multiply(b: Builder, layer: Layer) -> str:
    """Product of the branches; a per-channel vector gate on an image becomes `(N, C, 1, 1)`."""
    out_rank = len(layer.out_shape)
    total: str | None = None
    last = len(layer.inputs) - 1
    for index, (x, shape) in enumerate(zip(layer.inputs, layer.in_shapes, strict=True)):
        if len(shape) == 1 and out_rank == 3:
            axes = b.ints(f"{layer.name}/axes{index}", [2, 3])
            x = b.node("Unsqueeze", [x, axes], layer.helper(f"gate{index}"))
        if total is None:
            total = x
            continue
        name = layer.name if index == last else layer.helper(f"mul{index}")
        total = b.node("Mul", [total, x], name)
    assert total is not None
    return total if last else b.node("Identity", [total], layer.name)


@converts(ops.Concat)
def _concat(b: Builder, layer: Layer) -> str:
    return b.node("Concat", list(layer.inputs), layer.name, axis=_channel_axis(layer.out_shape))


@converts(ops.Project)
def _project(b: Builder, layer: Layer) -> str:
    """1x1 conv with stride (`Gemm` on vectors), then batch norm or a bias."""
    op: ops.Project = layer.op
    x = layer.inputs[0]
    kernel = layer.params["kernel"]
    plain = not op.batchnorm
    if len(layer.in_shapes[0]) == 1:
        inputs = [x, b.constant(f"{layer.name}.kernel", kernel)]
        if plain:
            inputs.append(b.constant(f"{layer.name}.bias", layer.params["bias"]))
        y = b.node("Gemm", inputs, layer.name if plain else layer.helper("dense"))
    else:
        inputs = [x, b.constant(f"{layer.name}.kernel", _conv_kernel(kernel))]
        if plain:
            inputs.append(b.constant(f"{layer.name}.bias", layer.params["bias"]))
        y = b.node(
            "Conv",
            inputs,
            layer.name if plain else layer.helper("conv"),
            kernel_shape=[1, 1],
            strides=list(op.stride),
        )
    if plain:
        return y
    return _batch_norm(b, layer, y, ops.BatchNorm().eps)


@converts(ops.ZeroPad)
def _zeropad(b: Builder, layer: Layer) -> str:
    """`x[:, :, ::s, ::s]`, then zero channels appended."""
    op: ops.ZeroPad = layer.op
    x = layer.inputs[0]
    in_shape = layer.in_shapes[0]
    rank = len(in_shape) + 1
    if _image(in_shape) and op.stride != (1, 1):
        x = b.node(
            "Slice",
            [
                x,
                b.ints(f"{layer.name}/starts", [0, 0]),
                b.ints(f"{layer.name}/ends", [in_shape[0], in_shape[1]]),
                b.ints(f"{layer.name}/axes", [2, 3]),
                b.ints(f"{layer.name}/steps", list(op.stride)),
            ],
            layer.helper("subsample"),
        )
    extra = layer.out_shape[-1] - in_shape[-1]
    axis = _channel_axis(in_shape)
    pads = [0] * (2 * rank)
    pads[rank + axis] = extra
    return b.node("Pad", [x, b.ints(f"{layer.name}/pads", pads)], layer.name)


def build_onnx(
    graph: Graph,
    params: Mapping[str, Mapping[str, Any]],
    state: Mapping[str, Mapping[str, Any]],
    *,
    opset: int = OPSET,
) -> onnx.ModelProto:
    """The ONNX model of a checked graph's inference function with these weights.

    Args:
        graph: the front end's output (shapes set, projections inserted).
        params: `{node: {leaf: array}}` as `CompiledModel.init` returns or a weights file holds.
        state: the running statistics, likewise.
        opset: the ONNX opset to declare (17 or newer).

    Returns:
        The model, checked with `onnx.checker` (shape inference included).
    """
    b = Builder()
    (input_name,) = graph.inputs
    input_shape = graph.node(input_name).shape
    assert input_shape is not None
    b.fresh(input_name)
    tensors: dict[str, str] = {}
    x = input_name
    if _image(input_shape):
        x = b.node("Transpose", [input_name], f"{input_name}/nchw", perm=[0, 3, 1, 2])
    tensors[input_name] = x
    keep = graph.ancestors(graph.output) | {graph.output}
    for name, node in graph.items():
        if name not in keep or name == input_name:
            continue
        converter = CONVERTERS.get(type(node.op))
        if converter is None:
            raise ArchOnnxError(f"`{node.op.name}` has no ONNX converter", node.span)
        layer = Layer(
            name=name,
            op=node.op,
            inputs=tuple(tensors[i] for i in node.inputs),
            in_shapes=tuple(graph.node(i).shape for i in node.inputs),  # type: ignore[misc]
            out_shape=node.shape,  # type: ignore[arg-type]
            params={k: np.asarray(v, np.float32) for k, v in params.get(name, {}).items()},
            state={k: np.asarray(v, np.float32) for k, v in state.get(name, {}).items()},
        )
        tensors[name] = converter(b, layer)
    out_shape = graph.node(graph.output).shape
    assert out_shape is not None
    result = tensors[graph.output]
    if _image(out_shape):
        result = b.node("Transpose", [result], f"{graph.output}/nhwc", perm=[0, 2, 3, 1])
    inputs = [_value_info(input_name, input_shape)]
    outputs = [_value_info(result, out_shape)]
    onnx_graph = helper.make_graph(
        b.nodes, graph.name or "network", inputs, outputs, initializer=b.initializers
    )
    model = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="archdsl",
        doc_string=f"network {graph.name}: NHWC float32 in, as archdsl's CompiledModel.apply",
    )
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model, full_check=True)
    return model


def _value_info(name: str, shape: Shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, *shape])


def export_onnx(
    graph: Graph,
    params: Mapping[str, Mapping[str, Any]],
    state: Mapping[str, Mapping[str, Any]],
    path: str | Path,
) -> onnx.ModelProto:
    """Build the ONNX model and write it to `path` atomically.

    Raises:
        ArchOnnxError: the file cannot be written.
    """
    model = build_onnx(graph, params, state)
    try:
        write_atomic(path, model.SerializeToString())
    except OSError as error:
        raise ArchOnnxError(f"cannot write `{path}`: {error.strerror}") from None
    return model


def _per_channel(b: Builder, layer: Layer, leaf: str, value: np.ndarray) -> str:
    """A per-channel vector shaped to broadcast over the ONNX tensor: `(C, 1, 1)` for images."""
    shaped = value.reshape(-1, 1, 1) if _image(layer.in_shapes[0]) else value
    return b.constant(f"{layer.name}.{leaf}", shaped)


@converts(ops.Split)
def _split(b: Builder, layer: Layer) -> str:
    op: ops.Split = layer.op
    size = layer.out_shape[-1]
    axis = _channel_axis(layer.in_shapes[0])
    starts = b.ints(f"{layer.name}/starts", [op.index * size])
    ends = b.ints(f"{layer.name}/ends", [(op.index + 1) * size])
    axes = b.ints(f"{layer.name}/axes", [axis])
    return b.node("Slice", [layer.inputs[0], starts, ends, axes], layer.name)


@converts(ops.Shuffle)
def _shuffle(b: Builder, layer: Layer) -> str:
    """View as (groups, C / groups), swap the two, flatten back (batch copied with 0)."""
    op: ops.Shuffle = layer.op
    shape = layer.in_shapes[0]
    c, g = shape[-1], op.groups
    rest = list(shape[:-1])
    grouped = b.ints(f"{layer.name}/grouped", [0, g, c // g, *rest])
    flat = b.ints(f"{layer.name}/flat", [0, c, *rest])
    perm = [0, 2, 1, *range(3, 3 + len(rest))]
    x = b.node("Reshape", [layer.inputs[0], grouped], layer.helper("grouped"))
    x = b.node("Transpose", [x], layer.helper("swap"), perm=perm)
    return b.node("Reshape", [x, flat], layer.name)


@converts(ops.DropPath)
def _droppath(b: Builder, layer: Layer) -> str:
    """Stochastic depth is the identity at inference."""
    return b.node("Identity", [layer.inputs[0]], layer.name)


@converts(ops.LayerNorm)
def _layernorm(b: Builder, layer: Layer) -> str:
    """`LayerNormalization` over the last axis: images go to NHWC and back."""
    op: ops.LayerNorm = layer.op
    x = layer.inputs[0]
    image = _image(layer.in_shapes[0])
    if image:
        x = b.node("Transpose", [x], layer.helper("nhwc"), perm=[0, 2, 3, 1])
    scale = b.constant(f"{layer.name}.scale", layer.params["scale"])
    bias = b.constant(f"{layer.name}.bias", layer.params["bias"])
    y = b.node(
        "LayerNormalization",
        [x, scale, bias],
        layer.helper("norm") if image else layer.name,
        axis=-1,
        epsilon=op.eps,
    )
    if image:
        y = b.node("Transpose", [y], layer.name, perm=[0, 3, 1, 2])
    return y


@converts(ops.LayerScale)
def _layerscale(b: Builder, layer: Layer) -> str:
    scale = _per_channel(b, layer, "scale", layer.params["scale"])
    return b.node("Mul", [layer.inputs[0], scale], layer.name)
