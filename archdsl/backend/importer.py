"""Map a PyTorch-layout state dict onto a network's params and state, converting layouts.

The source is read as modules (`layer1.0.conv1` holding `weight`, `bias`,
`running_mean`, ...), in the file's order. The network is read as units, in graph
order: one per conv, dense and batch norm, two for a shortcut projection with batch
norm (its 1x1 conv and its norm, as torchvision's `downsample.0` and `.1`). A unit
takes the module of the same name when there is one (or of a known alias:
`block.residual.shortcut` is `block.downsample.0/1`); the units left over take the
modules left over, one for one, in order, when both lists are equally long and every
pair fits in kind and shape. Anything else is refused with what did not fit.

Layouts: conv kernels OIHW -> HWIO, dense weights (out, in) -> (in, out), and
for a dense layer reading a flattened image, its rows from PyTorch's C, H, W order to
archdsl's H, W, C. Batch-norm `running_mean`/`running_var` become state `mean`/`var`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jax
import numpy as np

from archdsl.backend.model import compile_graph
from archdsl.backend.torch_files import read_state_dict
from archdsl.backend.weights import ArchWeightsError, check_weights, flatten, unflatten
from archdsl.graph import ops
from archdsl.graph.ir import Graph
from archdsl.graph.shapes import Shape

_SKIPPED_LEAVES = ("num_batches_tracked",)
"""PyTorch buffers with no archdsl counterpart (batch norm's step counter)."""

_SHAPE_KEEPING = (ops.Dropout, ops.Activation, ops.Identity)
"""Ops between a `flatten` and a dense layer that keep the flattened order."""


_ORDER_ERROR = "cannot pair the remaining"
UNORDERED_NOTE = (
    "a .safetensors file keeps no module order: its names were paired in natural "
    "order (`features.8` before `features.10`, but `classifier` before `features`); "
    "the .pth of the same weights keeps the order the model holds them in"
)


@dataclass(frozen=True)
class Module:
    """One module of the source: its tensors by leaf name (`weight`, `running_mean`)."""

    name: str
    tensors: Mapping[str, np.ndarray]

    @property
    def kind(self) -> str:
        """`conv`, `linear`, `norm`, `scale` or `other`, from what it holds."""
        weight = self.tensors.get("weight")
        if "running_mean" in self.tensors or "running_var" in self.tensors:
            return "norm"
        if "layer_scale" in self.tensors:
            return "scale"
        if weight is None:
            return "other"
        return {4: "conv", 2: "linear", 1: "norm"}.get(weight.ndim, "other")

    def describe(self) -> str:
        """`layer1.0.conv1 (weight 64x64x3x3)`."""
        shapes = ", ".join(f"{k} {_shape(v.shape)}" for k, v in self.tensors.items())
        return f"`{self.name}` ({shapes})"


@dataclass(frozen=True)
class Unit:
    """What one source module must provide for a node of the network."""

    node: str
    kind: str
    """`conv`, `linear`, `norm` (batch or layer norm) or `scale` (layer scale)."""
    want: Mapping[str, Shape]
    """Source leaf -> the PyTorch shape it must have."""
    aliases: tuple[str, ...] = ()
    """Other names the module may have in the source."""
    flattened: Shape | None = None
    """For a dense layer on a flattened image: the image's (H, W, C)."""
    gate: bool = False
    """A dense layer of a squeeze-and-excitation gate (it feeds a `multiply`)."""
    pointwise: bool = False
    """A dense layer filled from a 1x1 conv (SE written with convs, as torchvision's)."""

    @property
    def names(self) -> tuple[str, ...]:
        """Source module names that match this unit by name, best first."""
        return self.aliases if self.aliases else (self.node,)

    def describe(self) -> str:
        """`layer1.0.conv1 (conv, weight 64x64x3x3)`."""
        shapes = ", ".join(f"{k} {_shape(v)}" for k, v in self.want.items())
        return f"`{self.node}` ({self.kind}, {shapes})"

    def misfit(self, module: Module) -> str | None:
        """Why `module` cannot fill this unit, or None when it can."""
        if module.kind != self.kind:
            return f"the network's is a {self.kind} layer, the file's a {module.kind}"
        for leaf, shape in self.want.items():
            got = module.tensors.get(leaf)
            if got is None:
                if leaf in ("running_mean", "running_var"):
                    continue  # reported as missing statistics
                return f"it needs `{leaf}`, the file has none"
            if tuple(got.shape) != tuple(shape):
                return f"`{leaf}` must be {_shape(shape)}, the file's is {_shape(got.shape)}"
        extra = sorted(module.tensors.keys() - self.want.keys())
        if extra:
            return f"the file's module also holds {', '.join(f'`{e}`' for e in extra)}"
        return None


@dataclass(frozen=True)
class Pair:
    """A unit and the module that fills it, and how they were matched."""

    unit: Unit
    module: Module
    by: str
    """`name` or `position`."""


@dataclass(frozen=True)
class ImportReport:
    """How a state dict became archdsl weights; counts are of tensors."""

    pairs: tuple[Pair, ...]
    converted: tuple[str, ...]
    """archdsl tensors whose layout changed (kernels, dense weights, flatten rows)."""
    missing: tuple[str, ...] = ()
    """archdsl tensors the file had nothing for (allowed with `allow_missing`)."""
    unused: tuple[str, ...] = ()
    """Source tensors with no place in the network (allowed with `allow_unused`)."""
    skipped: tuple[str, ...] = ()
    """Source tensors with no archdsl meaning (`num_batches_tracked`)."""

    def count(self, by: str) -> int:
        """Source tensors matched `by` name or position."""
        return sum(len(p.module.tensors) for p in self.pairs if p.by == by)

    def lines(self, limit: int = 6) -> list[str]:
        """The match report for people."""
        out = [
            f"{self.count('name')} tensors matched by name, "
            f"{self.count('position')} by position, {len(self.converted)} converted, "
            f"{len(self.missing)} missing, {len(self.unused)} unused, "
            f"{len(self.skipped)} skipped"
        ]
        positional = [p for p in self.pairs if p.by == "position"]
        if positional:
            shown = [f"{p.module.name} -> {p.unit.node}" for p in positional[:limit]]
            more = f" and {len(positional) - limit} more" if len(positional) > limit else ""
            out.append(f"  by position: {', '.join(shown)}{more}")
        for title, names in (
            ("missing (left initialised)", self.missing),
            ("unused (ignored)", self.unused),
            ("skipped (no archdsl meaning)", self.skipped),
        ):
            if names:
                more = f" and {len(names) - limit} more" if len(names) > limit else ""
                out.append(f"  {title}: {', '.join(names[:limit])}{more}")
        return out


def _shape(shape: Any) -> str:
    return "x".join(map(str, shape)) or "scalar"


def modules(tensors: Mapping[str, np.ndarray]) -> tuple[list[Module], list[str]]:
    """Group `prefix.leaf` tensors into modules, in order of first appearance.

    Returns the modules and the names of skipped tensors (`num_batches_tracked`).
    """
    names = list(tensors)
    if names and all(n.startswith("module.") for n in names):  # saved from DataParallel
        tensors = {n[len("module.") :]: tensors[n] for n in names}
    grouped: dict[str, dict[str, np.ndarray]] = {}
    skipped: list[str] = []
    for name, array in tensors.items():
        prefix, _, leaf = name.rpartition(".")
        if leaf in _SKIPPED_LEAVES:
            skipped.append(name)
            continue
        grouped.setdefault(prefix, {})[leaf] = array
    return [Module(n, t) for n, t in grouped.items()], skipped


def _conv_want(kernel: Shape, bias: bool) -> dict[str, Shape]:
    h, w, i, o = kernel
    return {"weight": (o, i, h, w), **({"bias": (o,)} if bias else {})}


def _linear_want(kernel: Shape, bias: bool) -> dict[str, Shape]:
    return {"weight": (kernel[1], kernel[0]), **({"bias": (kernel[1],)} if bias else {})}


def _norm_want(channels: int) -> dict[str, Shape]:
    c = (channels,)
    return {"weight": c, "bias": c, "running_mean": c, "running_var": c}


def _flattened_image(graph: Graph, name: str) -> Shape | None:
    """The (H, W, C) image a dense layer's input was flattened from, if it was."""
    source = graph.node(name).inputs[0]
    while True:
        node = graph.node(source)
        if isinstance(node.op, ops.Flatten):
            shape = graph.node(node.inputs[0]).shape
            return shape if shape is not None and len(shape) == 3 else None
        if not isinstance(node.op, _SHAPE_KEEPING):
            return None
        source = node.inputs[0]


def _gates(graph: Graph, name: str) -> bool:
    """Whether a dense layer's output reaches a `multiply` through gate-like ops only."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for user in graph.users(todo.pop()):
            op = graph.node(user).op
            if isinstance(op, ops.Multiply):
                return True
            if isinstance(op, (ops.Dense, *_SHAPE_KEEPING)) and user not in seen:
                seen.add(user)
                todo.append(user)
    return False


def _pointwise(unit: Unit) -> Unit:
    """A gate's dense layer as the 1x1 conv PyTorch's squeeze-and-excitation writes."""
    want = dict(unit.want)
    want["weight"] = (*want["weight"], 1, 1)
    return replace(unit, kind="conv", want=want, pointwise=True)


def _shortcut_first(targets: list[Unit]) -> list[Unit]:
    """Each block's projection moved before its body (RegNet's `proj`, run first)."""
    out = list(targets)
    for unit in targets:
        block, found, _ = unit.node.partition(".residual.shortcut")
        if not found:
            continue
        out.remove(unit)
        first = next((i for i, u in enumerate(out) if u.node.startswith(f"{block}.")), None)
        out.insert(len(out) if first is None else first, unit)
    return out


def variants(targets: list[Unit]) -> list[list[Unit]]:
    """The network's units as a PyTorch model may hold them, most literal first.

    As they are; with squeeze-and-excitation's dense layers as 1x1 convs
    (torchvision's `SqueezeExcitation`); with projections before their block's body;
    both. Each differs only where the network has such layers.
    """
    gated = [_pointwise(u) if u.gate else u for u in targets]
    out = [targets]
    for candidate in (gated, _shortcut_first(targets), _shortcut_first(gated)):
        if candidate not in out:
            out.append(candidate)
    return out


def units(graph: Graph) -> list[Unit]:
    """The network's units in graph order (aux heads included)."""
    out: list[Unit] = []
    for name, node in graph.items():
        in_shapes = tuple(graph.node(i).shape for i in node.inputs)
        shapes = node.op.param_shapes(*in_shapes)
        if not shapes:
            continue
        op = node.op
        bias = "bias" in shapes
        if isinstance(op, ops.Conv):
            out.append(Unit(name, "conv", _conv_want(shapes["kernel"], bias)))
        elif isinstance(op, ops.Dense):
            flat = _flattened_image(graph, name)
            want = _linear_want(shapes["kernel"], bias)
            gate = _gates(graph, name)
            out.append(Unit(name, "linear", want, flattened=flat, gate=gate))
        elif isinstance(op, ops.BatchNorm):
            out.append(Unit(name, "norm", _norm_want(shapes["scale"][0])))
        elif isinstance(op, ops.LayerNorm):
            c = shapes["scale"]
            out.append(Unit(name, "norm", {"weight": c, "bias": c}))
        elif isinstance(op, ops.LayerScale):
            out.append(Unit(name, "scale", {"layer_scale": (*shapes["scale"], 1, 1)}))
        elif isinstance(op, ops.Project):
            out.extend(_project_units(name, op, shapes))
        else:
            raise ArchWeightsError(
                f"cannot import into `{name}`: no PyTorch import rule for `{op.name}` "
                "parameters yet",
                help="convert these tensors yourself and save them with `save_weights`",
            )
    return out


def _project_units(name: str, op: ops.Project, shapes: Mapping[str, Shape]) -> list[Unit]:
    block = name.removesuffix(".residual.shortcut")
    aliases = (f"{block}.downsample", f"{block}.shortcut")
    kernel = shapes["kernel"]
    conv = len(kernel) == 4
    make = _conv_want if conv else _linear_want
    kind = "conv" if conv else "linear"
    if not op.batchnorm:
        return [Unit(name, kind, make(kernel, True), (name, *(f"{a}.0" for a in aliases)))]
    return [
        Unit(name, kind, make(kernel, False), tuple(f"{a}.0" for a in aliases)),
        Unit(f"{name}#norm", "norm", _norm_want(op.filters), tuple(f"{a}.1" for a in aliases)),
    ]


def pair_modules(
    targets: list[Unit], sources: list[Module], *, allow_missing: bool, allow_unused: bool
) -> tuple[list[Pair], list[Unit], list[Module]]:
    """Pair units with modules: by name, then the rest by position, kind by kind.

    Pairing convs with convs, dense with linear and norms with norms, each in order,
    keeps the pairing right when a file lists kinds apart (safetensors files list
    their tensors by name: `bn1` before `conv1`, `classifier` before `features`).

    Returns the pairs, the units left without a module and the modules left unused.

    Raises:
        ArchWeightsError: a name match that does not fit, or leftovers that cannot be
            paired by position (different counts, or a pair that does not fit).
    """
    by_name = {m.name: m for m in sources}
    taken: set[str] = set()
    pairs: list[Pair] = []
    misfits: list[str] = []
    left: list[Unit] = []
    for unit in targets:
        module = next((by_name[n] for n in unit.names if n in by_name and n not in taken), None)
        if module is None:
            left.append(unit)
            continue
        taken.add(module.name)
        why = unit.misfit(module)
        if why:
            misfits.append(f"{unit.describe()} and the file's {module.describe()}: {why}")
        pairs.append(Pair(unit, module, "name"))
    if misfits:
        raise ArchWeightsError(
            f"{len(misfits)} layer(s) share a name with the file's but do not fit",
            notes=misfits[:8],
            help="was the network built with the file's arguments (e.g. `--arg classes=1000`)?",
        )
    rest = [m for m in sources if m.name not in taken]
    if not rest and allow_missing:
        return pairs, left, []
    if not left and allow_unused:
        return pairs, [], rest
    kinds = sorted({u.kind for u in left} | {m.kind for m in rest})
    uneven = [
        kind
        for kind in kinds
        if sum(u.kind == kind for u in left) != sum(m.kind == kind for m in rest)
    ]
    if uneven:
        raise ArchWeightsError(
            f"cannot pair by position: {len(left)} layer(s) of the network found no tensor "
            f"by name, and {len(rest)} module(s) of the file are left, "
            + ", ".join(
                f"{sum(u.kind == k for u in left)} vs {sum(m.kind == k for m in rest)} {k}"
                for k in uneven
            ),
            notes=[
                *[f"the network's {u.describe()}" for u in left if u.kind == uneven[0]][:4],
                *[f"the file's {m.describe()}" for m in rest if m.kind == uneven[0]][:4],
            ],
            help=(
                "`--allow-missing` keeps the network's extra layers initialised"
                if not rest
                else "`--allow-unused` ignores the file's extra modules"
                if not left
                else "is the spec the file's architecture, with the same arguments?"
            ),
        )
    for kind in kinds:
        mine = [u for u in left if u.kind == kind]
        theirs = [m for m in rest if m.kind == kind]
        for position, (unit, module) in enumerate(zip(mine, theirs, strict=True)):
            why = unit.misfit(module)
            if why:
                raise ArchWeightsError(
                    f"{_ORDER_ERROR} {kind} layers by position: "
                    f"{kind} {position + 1} of {len(mine)} does not fit",
                    notes=[
                        f"the network's {unit.describe()}",
                        f"the file's {module.describe()}",
                        f"why: {why}",
                        *(
                            [
                                f"the pair before it: {mine[position - 1].node} <- "
                                f"{theirs[position - 1].name}"
                            ]
                            if position
                            else []
                        ),
                    ],
                    help="is the spec the file's architecture, with the same arguments?",
                )
            pairs.append(Pair(unit, module, "position"))
    order = {unit.node: index for index, unit in enumerate(targets)}
    pairs.sort(key=lambda pair: order[pair.unit.node])
    return pairs, [], []


def _convert(unit: Unit, leaf: str, array: np.ndarray) -> tuple[str, str, np.ndarray, bool]:
    """`(tree, leaf, array, converted)`: where a source tensor goes, in archdsl's layout."""
    node_leaf = {"bias": "bias", "running_mean": "mean", "running_var": "var"}
    if unit.kind == "norm":
        tree = "state" if leaf in ("running_mean", "running_var") else "params"
        return tree, node_leaf.get(leaf, "scale"), array, False
    if unit.kind == "scale":
        return "params", "scale", array.reshape(-1), True
    if leaf == "bias":
        return "params", "bias", array, False
    if unit.pointwise:
        return "params", "kernel", array.reshape(array.shape[:2]).T, True
    if unit.kind == "conv":
        return "params", "kernel", np.transpose(array, (2, 3, 1, 0)), True
    if unit.flattened is not None:
        h, w, c = unit.flattened
        rows = array.reshape(array.shape[0], c, h, w).transpose(2, 3, 1, 0)
        return "params", "kernel", rows.reshape(h * w * c, array.shape[0]), True
    return "params", "kernel", array.T, True


@dataclass
class _Trees:
    params: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    state: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def import_state_dict(
    graph: Graph,
    tensors: Mapping[str, np.ndarray],
    *,
    allow_missing: bool = False,
    allow_unused: bool = False,
) -> tuple[dict, dict, ImportReport]:
    """Map a PyTorch-layout state dict onto `graph`'s params and state.

    Args:
        graph: the checked network.
        tensors: the state dict, by name, in the source's order (`read_state_dict`).
        allow_missing: keep network tensors the file lacks (batch-norm statistics
            included) at their initial values instead of refusing.
        allow_unused: ignore source modules the network has no place for.

    Returns:
        `(params, state, report)`, NumPy arrays in archdsl's layout.

    Raises:
        ArchWeightsError: the mapping is ambiguous or incomplete; the message says why.
    """
    sources, skipped = modules(tensors)
    errors: list[ArchWeightsError] = []
    for targets in variants(units(graph)):
        try:
            pairs, _, unused = pair_modules(
                targets, sources, allow_missing=allow_missing, allow_unused=allow_unused
            )
            break
        except ArchWeightsError as error:
            errors.append(error)
    else:
        # A variant whose counts agreed but whose order did not says more than a count.
        raise next((e for e in errors if e.message.startswith(_ORDER_ERROR)), errors[0])
    trees = _Trees()
    converted: list[str] = []
    no_stats: list[str] = []
    for pair in pairs:
        node = pair.unit.node.removesuffix("#norm")
        for leaf in pair.unit.want:
            array = pair.module.tensors.get(leaf)
            if array is None:
                no_stats.append(f"{pair.module.name}.{leaf}")
                continue
            tree, target, value, changed = _convert(pair.unit, leaf, array)
            getattr(trees, tree).setdefault(node, {})[target] = np.ascontiguousarray(value)
            if changed:
                converted.append(f"{node}.{target}")
    if no_stats and not allow_missing:
        raise ArchWeightsError(
            f"the file has no running statistics for {len(no_stats) // 2 or 1} batch norm(s)",
            notes=[f"missing `{n}`" for n in no_stats[:6]],
            help="these layers would normalise with mean 0 and variance 1; "
            "pass `--allow-missing` (`allow_missing=True`) if that is what you want",
        )
    want_params, want_state = jax.eval_shape(compile_graph(graph).init, jax.random.key(0))
    missing = sorted(
        (flatten(want_params).keys() | flatten(want_state).keys())
        - (flatten(trees.params).keys() | flatten(trees.state).keys())
    )
    if missing:
        assert allow_missing, f"unpaired tensors slipped through: {missing[:4]}"
        init_params, init_state = compile_graph(graph).init(jax.random.key(0))
        params = {**flatten(init_params), **flatten(trees.params)}
        state = {**flatten(init_state), **flatten(trees.state)}
        trees = _Trees(
            unflatten({k: np.asarray(v) for k, v in params.items()}),
            unflatten({k: np.asarray(v) for k, v in state.items()}),
        )
    check_weights(trees.params, trees.state, want_params, want_state)
    report = ImportReport(
        pairs=tuple(pairs),
        converted=tuple(converted),
        missing=tuple(missing),
        unused=tuple(f"{m.name}.{leaf}" for m in unused for leaf in m.tensors),
        skipped=tuple(skipped),
    )
    return trees.params, trees.state, report


def import_weights(
    graph: Graph,
    source: str | Path,
    *,
    allow_missing: bool = False,
    allow_unused: bool = False,
) -> tuple[dict, dict, ImportReport]:
    """`import_state_dict` of a `.pth`/`.pt` or PyTorch-layout `.safetensors` file."""
    try:
        return import_state_dict(
            graph, read_state_dict(source), allow_missing=allow_missing, allow_unused=allow_unused
        )
    except ArchWeightsError as error:
        if Path(source).suffix != ".safetensors" or not error.message.startswith(_ORDER_ERROR):
            raise
        raise ArchWeightsError(
            error.message, notes=[*error.notes, UNORDERED_NOTE], help=error.help
        ) from None
