"""ONNX export: onnxruntime's outputs equal archdsl's JAX inference, names and batch kept."""

from __future__ import annotations

import jax
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings

from archdsl.backend.model import compile_graph
from archdsl.backend.onnx_export import CONVERTERS, OPSET, build_onnx
from archdsl.backend.weights import save_weights
from archdsl.cli.main import main
from archdsl.frontend import build_graph, build_graph_text
from archdsl.graph import ops
from archdsl.graph.ir import Graph
from archdsl.testing import graphs

RTOL = 1e-5


def randomised(graph: Graph, seed: int = 0) -> tuple[dict, dict]:
    """Initialised params with random biases and batch-norm statistics, so none is trivial."""
    params, state = compile_graph(graph).init(jax.random.key(seed))
    rng = np.random.default_rng(seed)

    def jitter(leaf: str, x: jax.Array) -> np.ndarray:
        x = np.asarray(x)
        if leaf == "kernel":
            return x
        if leaf in ("scale", "var"):
            return rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
        return rng.normal(0.0, 0.1, x.shape).astype(np.float32)

    def walk(tree: dict) -> dict:
        return {n: {k: jitter(k, v) for k, v in leaves.items()} for n, leaves in tree.items()}

    return walk(params), walk(state)


def run_both(graph: Graph, batch: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(JAX output, onnxruntime output) for one random batch."""
    params, state = randomised(graph, seed)
    model = compile_graph(graph)
    x = np.random.default_rng(seed).standard_normal((batch, *model.input_shape)).astype(np.float32)
    want = np.asarray(model.apply(params, state, x)[0])
    proto = build_onnx(graph, params, state)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    return want, got


def assert_close(want: np.ndarray, got: np.ndarray) -> None:
    assert got.shape == want.shape
    scale = float(np.max(np.abs(want)))
    assert scale > 0, "a zero output compares nothing"
    assert float(np.max(np.abs(got - want))) <= RTOL * scale


def test_every_op_has_a_converter() -> None:
    assert set(CONVERTERS) == set(ops.OPS.values())


@pytest.mark.parametrize(
    "spec", ["lenet5", "tiny_resnet", "bottleneck_1x1", "inception_3a", "resnet_zeropad"]
)
def test_bundled_small_specs_match_jax(spec: str) -> None:
    assert_close(*run_both(build_graph(f"specs/{spec}.arch")))


# Every converter with its awkward cases: ceil pooling with an overhang, an even LRN
# (centred differently in ONNX), groups, dilation, `same` padding, dense over
# channels, softmax over an image, merges, both shortcuts, an aux head to prune.
ODDITIES = """
network Oddities {
    input 19x17x4
    conv 8 3x3 stride 2 same groups = 2 dilation = 1 as c1 -> relu6
    lrn 4 alpha = 0.001 beta = 0.75 k = 1 as even_lrn
    lrn 3 as odd_lrn
    maxpool 3x3 stride 2 ceil as mp
    aux head weight = 0.3 { globalavgpool -> dense 3 as aux_fc }
    avgpool 2x2 stride 2 padding 1 ceil as ap
    conv 8 3x3 padding 2 dilation = 2 as c2 -> gelu
    residual shortcut = zeropad { conv 12 3x3 stride 2 same as c3 -> silu }
    residual { conv 16 1x1 as c4 -> batchnorm as bn -> elu }
    add {
        branch { dense 16 as per_pixel -> leaky_relu 0.2 }
        branch { conv 16 1x1 as c5 -> sigmoid }
    } as merged
    multiply {
        branch { identity }
        branch { globalavgpool -> dense 16 as se_fc -> hardsigmoid }
        branch { conv 16 1x1 as se_map -> sigmoid -> maxpool 2 as se_pool }
    } as se -> hardswish
    dropout 0.3 -> tanh -> softmax as pixel_softmax
    globalmaxpool as gmp
    concat {
        branch { dense 6 as d1 -> log_softmax }
        branch { dense 4 as d2 -> identity }
    } as vec
    residual { dense 5 as d3 } as vec_res
}
"""


def test_oddities_match_jax() -> None:
    graph = build_graph_text(ODDITIES)
    kinds = {node.op.name for _, node in graph.items()}
    assert {"zeropad", "project", "lrn", "concat", "add", "multiply", "hardswish"} <= kinds
    assert_close(*run_both(graph, batch=3))


ZOO_OPS = """
network ZooOps {
    input 8x8x8
    conv 8 3x3 same as stem
    split 2 index 1 as half -> shuffle 2 as mixed
    layernorm as norm -> layerscale 0.5 as scaled -> droppath 0.2 as dropped
    globalavgpool as pool
    layernorm as vec_norm -> shuffle 4 as vec_mix -> split 2 as vec_half
}
"""


def test_zoo_channel_ops_match_jax() -> None:
    """split, shuffle, layernorm, layerscale and droppath on images and on vectors."""
    graph = build_graph_text(ZOO_OPS)
    kinds = {node.op.name for _, node in graph.items()}
    assert {"split", "shuffle", "layernorm", "layerscale", "droppath"} <= kinds
    assert_close(*run_both(graph, batch=3))


def test_image_output_is_nhwc() -> None:
    graph = build_graph_text("network Img {\n input 9x7x3\n conv 5 3x3 same as c -> relu\n}")
    want, got = run_both(graph)
    assert got.shape == (2, 9, 7, 5)
    assert_close(want, got)


@settings(max_examples=8, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(max_side=10, max_length=3))
def test_generated_networks_match_jax(graph: Graph) -> None:
    want, got = run_both(graph)
    scale = max(float(np.max(np.abs(want))), 1e-6)
    assert float(np.max(np.abs(got - want))) <= RTOL * scale


def test_model_is_checked_named_and_batch_symbolic() -> None:
    graph = build_graph_text(ODDITIES)
    params, state = randomised(graph)
    proto = build_onnx(graph, params, state)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == OPSET >= 17
    node_names = {n.name for n in proto.graph.node}
    main_path = graph.ancestors(graph.output) - set(graph.inputs)
    assert main_path <= node_names
    aux_nodes = {name for name, node in graph.items() if node.aux is not None}
    assert aux_nodes and not aux_nodes & node_names
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [19, 17, 4]
    initializers = {t.name for t in proto.graph.initializer}
    assert {"c1.kernel", "bn.mean", "vec_res.shortcut.kernel"} <= initializers
    assert not any(name.startswith("aux_fc") for name in initializers)


def test_cli_writes_onnx_with_weights(tmp_path, capsys) -> None:
    graph = build_graph("specs/tiny_resnet.arch")
    params, state = randomised(graph, seed=3)
    weights = tmp_path / "w.safetensors"
    save_weights(weights, params, state)
    out = tmp_path / "tiny.onnx"
    assert (
        main(["compile", "specs/tiny_resnet.arch", "-o", str(out), "--weights", str(weights)]) == 0
    )
    assert "opset 17" in capsys.readouterr().out
    x = np.random.default_rng(1).standard_normal((5, 32, 32, 3)).astype(np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x})
    want = np.asarray(compile_graph(graph).apply(params, state, x)[0])
    assert_close(want, got)


def test_cli_refuses_weights_of_another_network(tmp_path, capsys) -> None:
    graph = build_graph("specs/lenet5.arch")
    weights = tmp_path / "lenet.safetensors"
    save_weights(weights, *randomised(graph))
    out = tmp_path / "t.onnx"
    code = main(["compile", "specs/tiny_resnet.arch", "-o", str(out), "--weights", str(weights)])
    assert code == 1
    err = capsys.readouterr().err
    assert "the weights do not fit the network" in err and "missing `conv1.kernel`" in err
    assert not out.exists()


def test_cli_weights_need_an_onnx_output(capsys) -> None:
    assert main(["compile", "specs/lenet5.arch", "--weights", "w.safetensors"]) == 1
    assert "`--weights` needs `-o model.onnx`" in capsys.readouterr().err


def test_cli_unwritable_output_is_an_error(tmp_path, capsys) -> None:
    out = tmp_path / "no" / "such" / "folder" / "m.onnx"
    assert main(["compile", "specs/lenet5.arch", "-o", str(out)]) == 1
    assert f"cannot write exported model `{out}`" in capsys.readouterr().err  # before any work
