"""ONNX export against JAX: every bundled spec, onnxruntime's output vs `CompiledModel.apply`.

    python bench/onnx_vs_jax.py [--batch 2] [specs/resnet50.arch ...]

Weights are initialised, then biases, batch-norm scales and running statistics are
randomised (so a wrong statistic or layout shows). The difference is
`max |onnx - jax| / max |jax|` over the whole batch of outputs; the export passes
when it is at most 1e-5. A network that ends in softmax is compared on its logits (the
softmax's input, exported as the output): with random weights its probabilities are
near uniform or saturated, and would hide a wrong layer. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archdsl.backend.model import compile_graph
from archdsl.backend.onnx_export import build_onnx
from archdsl.errors import ArchError
from archdsl.frontend import build_graph
from archdsl.graph.ir import Graph
from archdsl.graph.ops import Softmax

TOLERANCE = 1e-5


def randomised(params: dict, state: dict, seed: int) -> tuple[dict, dict]:
    """Random biases, scales and statistics over freshly initialised kernels."""
    rng = np.random.default_rng(seed)

    def leaf(name: str, x: jax.Array) -> np.ndarray:
        x = np.asarray(x)
        if name == "kernel":
            return x
        if name in ("scale", "var"):
            return rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
        return rng.normal(0.0, 0.1, x.shape).astype(np.float32)

    def walk(tree: dict) -> dict:
        return {n: {k: leaf(k, v) for k, v in leaves.items()} for n, leaves in tree.items()}

    return walk(params), walk(state)


def logits(graph: Graph) -> Graph:
    """The graph without a final softmax: its input becomes the output."""
    last = graph.node(graph.output)
    if not isinstance(last.op, Softmax):
        return graph
    cut = graph.copy()
    cut.remove(graph.output)
    cut.outputs = (last.inputs[0], *graph.outputs[1:])
    return cut


def compare(spec: Path, batch: int) -> tuple[str, float, int, float]:
    """(network, max relative difference, ONNX nodes, seconds) for one spec."""
    start = time.perf_counter()
    graph = logits(build_graph(spec))
    model = compile_graph(graph)
    params, state = randomised(*model.init(jax.random.key(0)), seed=0)
    x = np.random.default_rng(1).standard_normal((batch, *model.input_shape)).astype(np.float32)
    want = np.asarray(model.apply(params, state, x)[0])
    proto = build_onnx(graph, params, state)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    diff = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
    return graph.name, diff, len(proto.graph.node), time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", type=Path)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    specs = args.specs or sorted(Path("specs").glob("*.arch"))
    print("| spec | network | ONNX nodes | max rel diff | ok | seconds |")
    print("| --- | --- | ---: | ---: | --- | ---: |")
    failed = 0
    for spec in specs:
        try:
            name, diff, nodes, seconds = compare(spec, args.batch)
        except ArchError as error:
            if "defines no `network`" in str(error):
                continue  # a file of blocks only
            raise
        ok = diff <= TOLERANCE
        failed += not ok
        print(
            f"| {spec.name} | {name} | {nodes} | {diff:.1e} | {'yes' if ok else 'NO'} "
            f"| {seconds:.0f} |",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
