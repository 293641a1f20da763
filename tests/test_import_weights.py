"""Importing PyTorch-layout weights: committed torch fixtures reproduce torch's logits."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from archdsl.backend.importer import import_state_dict, import_weights
from archdsl.backend.model import compile_graph
from archdsl.backend.torch_files import read_state_dict
from archdsl.backend.weights import ArchWeightsError, load_weights
from archdsl.cli.main import main
from archdsl.frontend import build_graph, build_graph_text

FIXTURES = Path(__file__).parent / "fixtures" / "torch"
HAS_TORCH = importlib.util.find_spec("torch") is not None


def logits(spec: str, params: dict, state: dict, x: np.ndarray) -> np.ndarray:
    return np.asarray(compile_graph(build_graph(spec)).apply(params, state, x)[0])


def assert_matches_torch(name: str, params: dict, state: dict) -> None:
    expected = np.load(FIXTURES / f"{name}.npz")
    got = logits(f"specs/{name}.arch", params, state, expected["x"])
    want = expected["logits"]
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))
    assert (got.argmax(1) == want.argmax(1)).all()


def test_torchvision_names_match_by_name() -> None:
    graph = build_graph("specs/tiny_resnet.arch")
    params, state, report = import_weights(graph, FIXTURES / "tiny_resnet.safetensors")
    assert report.count("position") == 0
    total = len(read_state_dict(FIXTURES / "tiny_resnet.safetensors"))
    assert len(report.skipped) == 6  # num_batches_tracked of the six batch norms
    assert report.count("name") == total - 6
    shortcut = next(p for p in report.pairs if p.unit.node == "layer2.0.residual.shortcut")
    assert shortcut.module.name == "layer2.0.downsample.0"
    assert state["layer2.0.residual.shortcut"]["mean"].shape == (16,)
    assert_matches_torch("tiny_resnet", params, state)


def test_sequential_matches_by_position_with_flatten_rows() -> None:
    graph = build_graph("specs/lenet5.arch")
    params, state, report = import_weights(graph, FIXTURES / "lenet5.safetensors")
    assert report.count("name") == 0 and report.count("position") == 10
    assert [p.module.name for p in report.pairs][:3] == ["0", "3", "7"]
    assert "c5.kernel" in report.converted
    assert_matches_torch("lenet5", params, state)


@pytest.mark.skipif(not HAS_TORCH, reason="reading .pth needs torch (CI has none)")
def test_pth_gives_the_same_weights_as_safetensors() -> None:
    a = read_state_dict(FIXTURES / "tiny_resnet.pth")
    b = read_state_dict(FIXTURES / "tiny_resnet.safetensors")
    assert set(a) == set(b)
    assert list(a)[:2] == ["conv1.weight", "bn1.weight"]  # a .pth keeps module order
    assert list(b)[:2] == ["bn1.bias", "bn1.num_batches_tracked"]  # safetensors: by name
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_pth_without_torch_says_what_to_do(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ArchWeightsError, match="needs PyTorch, which is not installed") as info:
        read_state_dict(FIXTURES / "lenet5.pth")
    assert "safetensors" in (info.value.help or "")


def test_bfloat16_safetensors_reads_without_torch(tmp_path) -> None:
    import ml_dtypes

    tensors = load_file(FIXTURES / "tiny_resnet.safetensors")
    halves = {
        k: v.astype(ml_dtypes.bfloat16) if v.dtype == np.float32 else v for k, v in tensors.items()
    }
    save_file(halves, tmp_path / "bf16.safetensors")
    got = read_state_dict(tmp_path / "bf16.safetensors")
    assert got["fc.weight"].dtype == np.float32
    np.testing.assert_array_equal(got["fc.weight"], halves["fc.weight"].astype(np.float32))


def test_missing_statistics_are_an_error_unless_allowed() -> None:
    tensors = dict(read_state_dict(FIXTURES / "tiny_resnet.safetensors"))
    del tensors["layer1.0.bn2.running_mean"], tensors["layer1.0.bn2.running_var"]
    graph = build_graph("specs/tiny_resnet.arch")
    with pytest.raises(ArchWeightsError, match="no running statistics for 1 batch norm") as info:
        import_state_dict(graph, tensors)
    assert "missing `layer1.0.bn2.running_mean`" in info.value.notes
    _, state, report = import_state_dict(graph, tensors, allow_missing=True)
    assert report.missing == ("layer1.0.bn2.mean", "layer1.0.bn2.var")
    np.testing.assert_array_equal(state["layer1.0.bn2"]["var"], np.ones(8, np.float32))


def test_wrong_classes_named_layer_is_refused() -> None:
    graph = build_graph("specs/tiny_resnet.arch", classes=5)
    with pytest.raises(
        ArchWeightsError, match="share a name with the file's but do not fit"
    ) as info:
        import_weights(graph, FIXTURES / "tiny_resnet.safetensors")
    assert any("`weight` must be 5x16, the file's is 10x16" in n for n in info.value.notes)


def test_other_architecture_is_refused_with_the_first_misfit() -> None:
    graph = build_graph_text(
        "network Net {\n input 32x32x1\n conv 6 3x3 as a -> avgpool 2\n"
        " conv 16 5x5 as b -> avgpool 2 -> flatten\n dense 120 as c\n dense 84 as d\n"
        " dense 10 as e\n}"
    )
    with pytest.raises(
        ArchWeightsError, match="conv layers by position: conv 1 of 2 does not fit"
    ) as info:
        import_weights(graph, FIXTURES / "lenet5.safetensors")
    assert any("`weight` must be 6x1x3x3, the file's is 6x1x5x5" in n for n in info.value.notes)


def test_count_mismatch_is_ambiguous() -> None:
    tensors = read_state_dict(FIXTURES / "lenet5.safetensors")
    fewer = {k: v for k, v in tensors.items() if not k.startswith("11.")}
    graph = build_graph("specs/lenet5.arch")
    with pytest.raises(
        ArchWeightsError, match="and 4 module\\(s\\) of the file are left, 3 vs 2 linear"
    ):
        import_state_dict(graph, fewer, allow_missing=True)
    extra = {**tensors, "head.weight": np.zeros((3, 10), np.float32)}
    with pytest.raises(ArchWeightsError, match="3 vs 4 linear"):
        import_state_dict(graph, extra, allow_unused=True)


def test_leftovers_on_one_side_only_need_permission() -> None:
    graph = build_graph("specs/tiny_resnet.arch")
    tensors = read_state_dict(FIXTURES / "tiny_resnet.safetensors")
    extra = {**tensors, "head.weight": np.zeros((3, 16), np.float32)}
    with pytest.raises(ArchWeightsError, match="0 layer\\(s\\) of the network") as info:
        import_state_dict(graph, extra)
    assert "--allow-unused" in (info.value.help or "")
    *_, report = import_state_dict(graph, extra, allow_unused=True)
    assert report.unused == ("head.weight",)
    fewer = {k: v for k, v in tensors.items() if not k.startswith("fc.")}
    with pytest.raises(ArchWeightsError, match="1 vs 0 linear") as info:
        import_state_dict(graph, fewer)
    assert "--allow-missing" in (info.value.help or "")
    *_, report = import_state_dict(graph, fewer, allow_missing=True)
    assert report.missing == ("fc.bias", "fc.kernel")


def test_cli_imports_and_reports(tmp_path, capsys) -> None:
    out = tmp_path / "tiny.safetensors"
    source = FIXTURES / "tiny_resnet.safetensors"
    assert main(["import-weights", "specs/tiny_resnet.arch", str(source), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tensors matched by name, 0 by position" in printed
    params, state = load_weights(out)
    assert set(state) == {
        "bn1",
        "layer1.0.bn1",
        "layer1.0.bn2",
        "layer2.0.bn1",
        "layer2.0.bn2",
        "layer2.0.residual.shortcut",
    }
    assert_matches_torch("tiny_resnet", params, state)


def test_cli_refusal_is_an_error_not_a_traceback(tmp_path, capsys) -> None:
    out = tmp_path / "x.safetensors"
    source = FIXTURES / "tiny_resnet.safetensors"
    assert main(["import-weights", "specs/lenet5.arch", str(source), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    assert not out.exists()


def test_missing_source_file(tmp_path, capsys) -> None:
    code = main(
        [
            "import-weights",
            "specs/lenet5.arch",
            str(tmp_path / "no.pth"),
            "-o",
            str(tmp_path / "o.safetensors"),
        ]
    )
    assert code == 1
    assert "does not exist" in capsys.readouterr().err


def test_imported_weights_are_an_ordinary_archdsl_file(tmp_path) -> None:
    graph = build_graph("specs/tiny_resnet.arch")
    params, state, _ = import_weights(graph, FIXTURES / "tiny_resnet.safetensors")
    model = compile_graph(graph)
    want_params, want_state = jax.eval_shape(model.init, jax.random.key(0))
    assert jax.tree.structure(params) == jax.tree.structure(want_params)
    assert jax.tree.structure(state) == jax.tree.structure(want_state)


GATED = """
network Gated(classes = 3) {
    input 8x8x4
    conv 8 3x3 same bias = false as conv1 -> batchnorm as bn1 -> relu
    multiply {
        branch {}
        branch as gate {
            globalavgpool -> dense 2 as fc1 -> relu -> dense 8 as fc2 -> sigmoid
        }
    }
    layernorm as norm
    layerscale 0.5 as ls
    globalavgpool as pool
    dense classes as fc
}
"""


def test_squeeze_excitation_convs_layer_norm_and_layer_scale_by_position() -> None:
    # torchvision's layout: SE with 1x1 convs, LayerNorm weight/bias, CNBlock's
    # `layer_scale` (C, 1, 1); names that match nothing, so all is by position.
    rng = np.random.default_rng(0)

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    tensors = {
        "features.0.weight": r(8, 4, 3, 3),
        **{f"features.1.{k}": r(8) for k in ("weight", "bias", "running_mean")},
        "features.1.running_var": np.abs(r(8)) + 0.5,
        "features.3.fc1.weight": r(2, 8, 1, 1),
        "features.3.fc1.bias": r(2),
        "features.3.fc2.weight": r(8, 2, 1, 1),
        "features.3.fc2.bias": r(8),
        "features.4.weight": r(8),
        "features.4.bias": r(8),
        "features.5.layer_scale": r(8, 1, 1),
        "head.weight": r(3, 8),
        "head.bias": r(3),
    }
    graph = build_graph_text(GATED)
    params, state, report = import_state_dict(graph, tensors)
    assert report.count("position") == len(tensors) and report.count("name") == 0
    np.testing.assert_array_equal(
        params["conv1"]["kernel"], tensors["features.0.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        params["multiply.gate.fc1"]["kernel"], tensors["features.3.fc1.weight"][:, :, 0, 0].T
    )
    np.testing.assert_array_equal(
        params["multiply.gate.fc2"]["kernel"], tensors["features.3.fc2.weight"][:, :, 0, 0].T
    )
    np.testing.assert_array_equal(params["norm"]["scale"], tensors["features.4.weight"])
    np.testing.assert_array_equal(params["ls"]["scale"], tensors["features.5.layer_scale"][:, 0, 0])
    np.testing.assert_array_equal(params["fc"]["kernel"], tensors["head.weight"].T)
    np.testing.assert_array_equal(state["bn1"]["var"], tensors["features.1.running_var"])
    # the same gate written with linear layers (timm's style) imports as it is
    linear = dict(tensors)
    for fc in ("fc1", "fc2"):
        linear[f"features.3.{fc}.weight"] = tensors[f"features.3.{fc}.weight"][:, :, 0, 0]
    params2, _, _ = import_state_dict(graph, linear)
    np.testing.assert_array_equal(
        params2["multiply.gate.fc2"]["kernel"], params["multiply.gate.fc2"]["kernel"]
    )


def test_projection_held_before_its_block_pairs_by_position() -> None:
    # RegNet's order: a block's projection (conv + batch norm) before its body. The
    # tiny ResNet's tensors, renamed to match nothing and reordered that way, give the
    # same weights as the by-name import.
    graph = build_graph("specs/tiny_resnet.arch")
    tensors = dict(read_state_dict(FIXTURES / "tiny_resnet.safetensors"))
    want_params, want_state, _ = import_state_dict(graph, tensors)
    names = [n for n in tensors if "num_batches" not in n]
    shortcut = [n for n in names if ".downsample." in n]
    body = [n for n in names if n not in shortcut]
    first = body.index(next(n for n in body if n.startswith("layer2.0.")))
    ordered = body[:first] + shortcut + body[first:]
    modules = list(dict.fromkeys(n.rpartition(".")[0] for n in ordered))
    renamed = {
        f"m{modules.index(n.rpartition('.')[0])}.{n.rpartition('.')[2]}": tensors[n]
        for n in ordered
    }
    params, state, report = import_state_dict(graph, renamed)
    assert report.count("name") == 0
    for tree, want in ((params, want_params), (state, want_state)):
        for node, leaves in want.items():
            for leaf, x in leaves.items():
                np.testing.assert_array_equal(tree[node][leaf], x)


def test_safetensors_order_misfit_says_the_file_keeps_no_order(tmp_path) -> None:
    graph = build_graph_text(
        "network Two {\n    input 8x8x4\n    conv 8 3x3 bias = false as c1\n"
        "    conv 6 3x3 bias = false as c2\n}\n"
    )
    rng = np.random.default_rng(0)
    # `z_first` runs first, but `a_second` sorts first: paired by name order, they misfit.
    tensors = {
        "z_first.weight": rng.standard_normal((8, 4, 3, 3)).astype(np.float32),
        "a_second.weight": rng.standard_normal((6, 8, 3, 3)).astype(np.float32),
    }
    path = tmp_path / "two.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(ArchWeightsError, match="cannot pair the remaining conv") as info:
        import_weights(graph, path)
    assert any("keeps no module order" in note for note in info.value.notes)
    # In the order the model holds them (as a .pth keeps it), they pair.
    params, _, _ = import_state_dict(graph, tensors)
    assert params["c2"]["kernel"].shape == (3, 3, 8, 6)
