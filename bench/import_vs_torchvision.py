"""`archdsl import-weights` against torchvision: imported weights give torchvision's logits.

    python bench/import_vs_torchvision.py [resnet18 alexnet ...]

Needs torch and torchvision (`pip install 'archdsl[torch]'`). For each bundled spec
that torchvision has, a randomly initialised torchvision model (batch-norm scales,
shifts and running statistics randomised too) is saved as a `.pth` state dict and as
a PyTorch-layout `.safetensors` file, each imported with `archdsl.import_weights` and
run on the same random batch (through a softmax where the spec ends with one, as
VGG-16's does). The difference is `max |archdsl - torch| / max |torch|`
over the batch's logits; it passes at 1e-5 with equal argmax. Prints a Markdown table.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archdsl.backend.importer import import_weights
from archdsl.backend.model import compile_graph
from archdsl.frontend import build_graph

MODELS: dict[str, tuple[str, Callable[[], torch.nn.Module]]] = {
    "resnet18": ("specs/resnet18.arch", torchvision.models.resnet18),
    "resnet50": ("specs/resnet50.arch", torchvision.models.resnet50),
    "alexnet": ("specs/alexnet.arch", torchvision.models.alexnet),
    "vgg16": ("specs/vgg16.arch", torchvision.models.vgg16),
    "googlenet": (
        "specs/googlenet_bn.arch",
        lambda: torchvision.models.googlenet(aux_logits=True, init_weights=True),
    ),
    "squeezenet1_0": ("specs/squeezenet1_0.arch", torchvision.models.squeezenet1_0),
    "squeezenet1_1": ("specs/squeezenet1_1.arch", torchvision.models.squeezenet1_1),
    "mobilenet_v2": ("specs/mobilenet_v2.arch", torchvision.models.mobilenet_v2),
    "resnext50_32x4d": ("specs/resnext50_32x4d.arch", torchvision.models.resnext50_32x4d),
    "wide_resnet50_2": ("specs/wide_resnet50_2.arch", torchvision.models.wide_resnet50_2),
    "vgg19_bn": ("specs/vgg19_bn.arch", torchvision.models.vgg19_bn),
    "densenet121": ("specs/densenet121.arch", torchvision.models.densenet121),
    "inception_v3": (
        "specs/inception_v3.arch",
        lambda: torchvision.models.inception_v3(aux_logits=True, init_weights=True),
    ),
}
TOLERANCE = 1e-5


def randomise_norms(model: torch.nn.Module) -> None:
    """Batch-norm scales, shifts and running statistics away from their defaults."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0.0, 0.1)
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)


def compare(name: str, folder: Path, batch: int = 2) -> list[str]:
    """Table rows for one model: one per source format."""
    spec, make = MODELS[name]
    torch.manual_seed(0)
    net = make().eval()
    randomise_norms(net)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    graph = build_graph(spec)
    model = compile_graph(graph)
    x = np.random.default_rng(0).standard_normal((batch, *model.input_shape)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
        if graph.node(graph.output).op.name == "softmax":  # the spec ends in its softmax
            want = torch.softmax(want, dim=1)
        want = want.numpy()
    sources = {"pth": folder / f"{name}.pth", "safetensors": folder / f"{name}.safetensors"}
    torch.save(state, sources["pth"])
    save_file(state, str(sources["safetensors"]))
    del net, state
    rows = []
    for kind, path in sources.items():
        start = time.perf_counter()
        params, running, report = import_weights(graph, path)
        got = np.asarray(model.apply(params, running, x)[0])
        diff = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        same = bool((got.argmax(1) == want.argmax(1)).all())
        ok = diff <= TOLERANCE and same
        rows.append(
            f"| {name} | {Path(spec).name} | {kind} | {report.count('name')} | "
            f"{report.count('position')} | {len(report.converted)} | {diff:.1e} | "
            f"{'yes' if same else 'NO'} | {'yes' if ok else 'NO'} | "
            f"{time.perf_counter() - start:.0f} |"
        )
        path.unlink()
    return rows


def main() -> int:
    names = sys.argv[1:] or list(MODELS)
    print(
        "| model | spec | source | tensors by name | by position | converted "
        "| max rel diff | argmax equal | ok | seconds |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- | ---: |")
    failed = 0
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            for row in compare(name, Path(folder)):
                failed += "| NO |" in row
                print(row, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
