"""Check the bundled specs against torchvision: same weights, same input, same logits.

    python bench/vs_torchvision.py [--models resnet50 densenet121 ...] [--batch 2] [--list]

Needs the `torch` extra (`pip install "archdsl[torch]"`). For every bundled spec that
torchvision has, one model at a time:

1. torchvision builds the model with random weights; batch-norm layers get random scale
   and shift, then running statistics measured on a random batch and perturbed at random
   (so a mean/variance or scale/shift mix-up cannot cancel out);
2. the state dict is carried into archdsl's parameter tree: layers are paired in the
   order they run (torch forward hooks against `graph.order()`), each pair checked by kind
   and shape; conv kernels go OIHW -> HWIO, dense kernels are transposed (and the first
   dense after a flatten has its rows reordered from CHW to HWC); an inserted shortcut
   `project` takes torchvision's `downsample` conv and batch norm; a dense layer takes a 1x1
   conv where torchvision writes squeeze-and-excitation with convs;
3. the same input (NCHW for torch, NHWC for archdsl) goes through both, in inference mode.

The table shows parameters (torchvision's count and archdsl's), multiply-accumulates
(torchvision's published GFLOPS column and archdsl's report), and the largest difference
between the logits relative to the largest logit, against torchvision in float32 and in
float64. A row passes when the float32 difference is at most 1e-5 and the argmax agrees on
every example; where float32 itself is further than that from the float64 answer (the
deepest networks), it passes as `float32 noise` when archdsl is within twice torchvision's
own float32 error. The exit status is 1 if any row fails.

The name and layout mapping lives here until `archdsl import-weights` makes it a product
feature.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

try:
    import torch
    import torchvision
except ImportError:  # pragma: no cover - the optional extra
    sys.exit('vs_torchvision needs torch and torchvision: pip install "archdsl[torch]"')

from archdsl.backend.model import compile_graph
from archdsl.frontend import build_graph
from archdsl.graph.ir import Graph
from archdsl.graph.report import build_report

SPECS = Path(__file__).resolve().parents[1] / "specs"
TOLERANCE = 1e-5


@dataclass(frozen=True)
class Entry:
    """A bundled spec, torchvision's builder for the same network, and its published cost."""

    spec: str
    torchvision: str
    size: int = 224
    gmacs: float | None = None
    """torchvision's GFLOPS column (multiply-accumulates), from its weights' `_ops` metadata."""
    kwargs: tuple[tuple[str, object], ...] = ()
    shortcut_first: bool = False
    """torchvision runs the residual projection before the body (RegNet's `proj`)."""


ZOO = [
    Entry("alexnet", "alexnet", gmacs=0.714),
    Entry("vgg16", "vgg16", gmacs=15.47),
    Entry("vgg19_bn", "vgg19_bn", gmacs=19.632),
    Entry("resnet18", "resnet18", gmacs=1.814),
    Entry("resnet34", "resnet34", gmacs=3.664),
    Entry("resnet50", "resnet50", gmacs=4.089),
    Entry("resnet101", "resnet101", gmacs=7.801),
    Entry("resnet152", "resnet152", gmacs=11.514),
    Entry("resnext50_32x4d", "resnext50_32x4d", gmacs=4.23),
    Entry("wide_resnet50_2", "wide_resnet50_2", gmacs=11.398),
    Entry("googlenet_bn", "googlenet", gmacs=1.498, kwargs=(("init_weights", True),)),
    Entry(
        "inception_v3",
        "inception_v3",
        size=299,
        gmacs=5.713,
        kwargs=(("init_weights", True), ("aux_logits", True)),
    ),
    Entry("squeezenet1_0", "squeezenet1_0", gmacs=0.819),
    Entry("squeezenet1_1", "squeezenet1_1", gmacs=0.349),
    Entry("densenet121", "densenet121", gmacs=2.834),
    Entry("mobilenet_v2", "mobilenet_v2", gmacs=0.301),
    Entry("mobilenet_v3_large", "mobilenet_v3_large", gmacs=0.217),
    Entry("mobilenet_v3_small", "mobilenet_v3_small", gmacs=0.057),
    Entry("efficientnet_b0", "efficientnet_b0", gmacs=0.386),
    Entry("shufflenet_v2_x1_0", "shufflenet_v2_x1_0", gmacs=0.145),
    Entry("regnet_y_400mf", "regnet_y_400mf", gmacs=0.402, shortcut_first=True),
    Entry("convnext_tiny", "convnext_tiny", gmacs=4.456),
]

_TORCH_KINDS = {
    torch.nn.Conv2d: "conv",
    torch.nn.BatchNorm2d: "batchnorm",
    torch.nn.Linear: "dense",
    torch.nn.LayerNorm: "layernorm",
    torchvision.models.convnext.LayerNorm2d: "layernorm",
    # ConvNeXt's block holds its layer scale itself; its hook fires after its children run
    torchvision.models.convnext.CNBlock: "layerscale",
}


# ----------------------------------------------------------------------------- torch side


def torch_model(entry: Entry, rng: np.random.Generator) -> torch.nn.Module:
    """torchvision's model with random weights and randomised batch-norm statistics."""
    torch.manual_seed(int(rng.integers(2**31)))
    model = torchvision.models.get_model(entry.torchvision, weights=None, **dict(entry.kwargs))
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
            if isinstance(module, torchvision.models.convnext.CNBlock):
                module.layer_scale.uniform_(0.2, 1.0)  # 1e-6 would hide the block
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.1)
        if bns:
            # Running statistics measured on a random batch (momentum 1 keeps only it), so
            # activations stay in range through a hundred layers; then perturbed, so that
            # they are not the batch statistics train mode would use.
            for bn in bns:
                bn.momentum = 1.0
            model.train()
            model(torch.randn(4, 3, entry.size, entry.size))
            for bn in bns:
                std = bn.running_var.sqrt()
                bn.running_mean.add_(0.2 * std * torch.randn_like(std))
                bn.running_var.mul_(torch.empty_like(std).uniform_(0.7, 1.4))
    return model.eval()


def execution_order(model: torch.nn.Module, size: int) -> list[tuple[str, torch.nn.Module]]:
    """Modules holding parameters, in the order a training-mode forward runs them.

    Training mode, so that auxiliary heads run too (torchvision registers GoogLeNet's at
    the end but runs them after inception 4a and 4d, where the spec has them).
    """
    order: list[tuple[str, torch.nn.Module]] = []
    names = {module: name for name, module in model.named_modules()}
    hooks = [
        module.register_forward_hook(lambda m, i, o: order.append((names[m], m)))
        for module in model.modules()
        if type(module) in _TORCH_KINDS
    ]
    momentum = {}
    for bn in model.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            momentum[bn] = bn.momentum
            bn.momentum = 0.0  # keep the running statistics as they are
    try:
        model.train()
        with torch.no_grad():
            model(torch.randn(2, 3, size, size))
    finally:
        for hook in hooks:
            hook.remove()
        for bn, value in momentum.items():
            bn.momentum = value
        model.eval()
    return order


# ----------------------------------------------------------------------------- carrying over


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _conv_leaves(conv: torch.nn.Conv2d) -> dict[str, np.ndarray]:
    leaves = {"kernel": _numpy(conv.weight).transpose(2, 3, 1, 0)}  # OIHW -> HWIO
    if conv.bias is not None:
        leaves["bias"] = _numpy(conv.bias)
    return leaves


def _bn_leaves(bn: torch.nn.BatchNorm2d) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    params = {"scale": _numpy(bn.weight), "bias": _numpy(bn.bias)}
    state = {"mean": _numpy(bn.running_mean), "var": _numpy(bn.running_var)}
    return params, state


def _flattened_map(graph: Graph, name: str) -> tuple[int, ...] | None:
    """The (H, W, C) map a dense node's input was flattened from, if it was one."""
    node = graph.node(name)
    while node.inputs:
        (source,) = node.inputs
        upstream = graph.node(source)
        if upstream.op.name == "flatten":
            shape = graph.node(upstream.inputs[0]).shape
            return shape if shape is not None and len(shape) == 3 else None
        if upstream.op.name not in ("dropout", "relu", "identity"):
            return None
        node = upstream
    return None


def _dense_leaves(graph: Graph, name: str, linear: torch.nn.Linear) -> dict[str, np.ndarray]:
    weight = _numpy(linear.weight)  # (out, in)
    spatial = _flattened_map(graph, name)
    if spatial is not None:
        # torch flattens C, H, W; archdsl flattens H, W, C
        h, w, c = spatial
        weight = weight.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)
    leaves = {"kernel": weight.T.copy()}
    if linear.bias is not None:
        leaves["bias"] = _numpy(linear.bias)
    return leaves


def archdsl_order(graph: Graph, shortcut_first: bool) -> list[str]:
    """archdsl's nodes in the order torchvision runs their counterparts.

    `graph.order()` runs an inserted shortcut projection after the residual body, as
    torchvision's ResNet runs `downsample`; RegNet runs its `proj` before the body, so
    with `shortcut_first` each projection moves before the first node of its body.
    """
    order = list(graph.order())
    if not shortcut_first:
        return order
    for name in [n for n in order if graph.node(n).op.name == "project"]:
        (source,) = graph.node(name).inputs
        (residual,) = graph.users(name)
        body_out = next(i for i in graph.node(residual).inputs if i != name)
        body = graph.ancestors(body_out) - graph.ancestors(source) - {source}
        body.add(body_out)
        order.remove(name)
        first = min(order.index(n) for n in body)
        order.insert(first, name)
    return order


def carry_over(
    graph: Graph, order: list[tuple[str, torch.nn.Module]], *, shortcut_first: bool = False
) -> tuple[dict, dict, list[tuple[str, str]]]:
    """archdsl params and state from torchvision's modules, paired in execution order.

    Returns:
        params, state, and the (archdsl node, torch module) pairs.

    Raises:
        ValueError: the two sides disagree on a layer's kind or a tensor's shape.
    """
    params: dict[str, dict[str, np.ndarray]] = {}
    state: dict[str, dict[str, np.ndarray]] = {}
    pairs: list[tuple[str, str]] = []
    queue = list(order)

    def take(kind: str, node: str) -> tuple[str, torch.nn.Module]:
        if not queue:
            raise ValueError(f"`{node}` ({kind}): torchvision has no layers left")
        torch_name, module = queue.pop(0)
        if _TORCH_KINDS[type(module)] != kind:
            raise ValueError(
                f"`{node}` is a {kind}, but torchvision runs `{torch_name}` "
                f"({type(module).__name__}) at that point"
            )
        return torch_name, module

    for name in archdsl_order(graph, shortcut_first):
        node = graph.node(name)
        in_shapes = tuple(graph.node(i).shape for i in node.inputs)
        expected = node.op.param_shapes(*in_shapes)
        if not expected:
            continue
        kind = node.op.name
        if kind == "conv":
            torch_name, module = take("conv", name)
            params[name] = _conv_leaves(module)
            if tuple(module.stride) != node.op.stride or module.groups != node.op.groups:
                raise ValueError(f"`{name}`: `{torch_name}` has another stride or groups")
        elif kind == "dense" and queue and isinstance(queue[0][1], torch.nn.Conv2d):
            # squeeze-and-excitation: torchvision's 1x1 convs on a 1x1 map are dense layers
            torch_name, module = take("conv", name)
            leaves = _conv_leaves(module)
            params[name] = {**leaves, "kernel": leaves["kernel"][0, 0]}
        elif kind == "dense":
            torch_name, module = take("dense", name)
            params[name] = _dense_leaves(graph, name, module)
        elif kind == "batchnorm":
            torch_name, module = take("batchnorm", name)
            params[name], state[name] = _bn_leaves(module)
        elif kind == "project":  # torchvision's downsample: conv 1x1, then batch norm
            torch_name, conv = take("conv", name)
            bn_name, bn = take("batchnorm", name)
            params[name], state[name] = _bn_leaves(bn)
            params[name]["kernel"] = _conv_leaves(conv)["kernel"]
            torch_name = f"{torch_name} + {bn_name}"
        elif kind == "layernorm":
            torch_name, module = take("layernorm", name)
            params[name] = {"scale": _numpy(module.weight), "bias": _numpy(module.bias)}
        elif kind == "layerscale":
            torch_name, module = take("layerscale", name)
            params[name] = {"scale": _numpy(module.layer_scale).reshape(-1)}
        else:
            raise ValueError(f"`{name}`: no torchvision counterpart for `{kind}`")
        got = {leaf: tuple(a.shape) for leaf, a in params[name].items()}
        if got != expected:
            raise ValueError(f"`{name}` expects {expected}, `{torch_name}` gives {got}")
        pairs.append((name, torch_name))
    if queue:
        raise ValueError(f"torchvision layers left over: {[n for n, _ in queue[:5]]}")
    return params, state, pairs


# ----------------------------------------------------------------------------- comparing


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    spec: str
    torch_params: int
    params: int
    gmacs: float | None
    macs: int
    relative: float
    """archdsl against torchvision, both float32."""
    relative_exact: float
    """archdsl (float32) against torchvision in float64."""
    torch_exact: float
    """torchvision float32 against float64: how much float32 itself is off."""
    argmax_equal: bool
    seconds: float

    @property
    def status(self) -> str:
        """`yes` within 1e-5; `float32 noise` where float32 itself is further from the exact
        answer than that (archdsl within twice torchvision's own float32 error); else `NO`."""
        if self.torch_params != self.params or not self.argmax_equal:
            return "NO"
        if self.relative <= TOLERANCE:
            return "yes"
        if self.torch_exact > TOLERANCE / 2 and self.relative_exact <= 2 * self.torch_exact:
            return "float32 noise"
        return "NO"


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    """The largest difference, relative to the largest logit of `b`."""
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _logits_node(graph: Graph) -> str:
    """The node whose output is the logits: the softmax's input where a spec ends in one."""
    out = graph.output
    node = graph.node(out)
    return node.inputs[0] if node.op.name in ("softmax", "log_softmax") else out


def compare(entry: Entry, batch: int, seed: int) -> Row:
    """Run one model through both and measure how far the logits are apart."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    model = torch_model(entry, rng)
    torch_params = sum(
        p.numel()
        for n, p in model.named_parameters()
        if not n.startswith(("aux", "AuxLogits"))  # torchvision's count is at inference
    )
    order = execution_order(model, entry.size)
    graph = build_graph(SPECS / f"{entry.spec}.arch")
    report = build_report(graph)
    params, state, _ = carry_over(graph, order, shortcut_first=entry.shortcut_first)

    x = rng.standard_normal((batch, entry.size, entry.size, 3), dtype=np.float32)
    nchw = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        expected = model(nchw).numpy()
        exact = model.double()(nchw.double()).numpy()  # the float64 answer, for scale
    del model, order
    gc.collect()

    compiled = compile_graph(graph)
    logits_node = _logits_node(graph)
    if logits_node == graph.output:
        got, _ = compiled.apply(params, state, x)
    else:
        outs, _ = compiled.apply(params, state, x, intermediates=True)
        got = outs[logits_node]
    got = np.asarray(got)
    return Row(
        spec=entry.spec,
        torch_params=torch_params,
        params=report.inference_params,
        gmacs=entry.gmacs,
        macs=report.macs,
        relative=_relative(got, expected),
        relative_exact=_relative(got, exact),
        torch_exact=_relative(expected, exact),
        argmax_equal=bool(np.all(got.argmax(-1) == expected.argmax(-1))),
        seconds=time.perf_counter() - start,
    )


def _table(rows: list[Row]) -> str:
    lines = [
        "| architecture | params torchvision | params archdsl | GMACs published | GMACs archdsl "
        "| rel. diff vs torchvision | archdsl vs float64 | torchvision vs float64 | argmax | ok |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        published = f"{r.gmacs:.2f}" if r.gmacs is not None else "-"
        lines.append(
            f"| {r.spec} | {r.torch_params:,} | {r.params:,} | {published} | {r.macs / 1e9:.3f} "
            f"| {r.relative:.1e} | {r.relative_exact:.1e} | {r.torch_exact:.1e} "
            f"| {'equal' if r.argmax_equal else 'DIFFERS'} "
            f"| {r.status} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", help="specs to check (default: all)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="list the specs and exit")
    args = parser.parse_args(argv)
    entries = {e.spec: e for e in ZOO}
    if args.list:
        print("\n".join(entries))
        return 0
    unknown = sorted(set(args.models or ()) - set(entries))
    if unknown:
        parser.error(f"no torchvision counterpart for {unknown}; choose from {sorted(entries)}")
    jax.config.update("jax_default_matmul_precision", "highest")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    for spec in args.models or entries:
        row = compare(entries[spec], args.batch, args.seed)
        rows.append(row)
        print(
            f"{row.spec}: params {row.params:,} / {row.torch_params:,}, "
            f"max rel. diff {row.relative:.1e} (float64: archdsl {row.relative_exact:.1e}, "
            f"torchvision {row.torch_exact:.1e}), {row.seconds:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        jax.clear_caches()
        gc.collect()
    print(_table(rows))
    return 0 if all(r.status != "NO" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
