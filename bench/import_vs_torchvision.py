"""`archdsl import-weights` against torchvision: imported weights give torchvision's logits.

    python bench/import_vs_torchvision.py [--size 64] [resnet18 alexnet ...]

Needs torch and torchvision (`pip install 'archdsl[torch]'`). For each bundled spec
that torchvision has (the pairing of `bench/vs_torchvision.py`), a randomly initialised
torchvision model (batch-norm scales, shifts and running statistics randomised as
`vs_torchvision.torch_model` does) is saved as a `.pth` state dict and as a
PyTorch-layout `.safetensors` file, each imported with `archdsl.import_weights` and run
on the same random batch of 2 (through a softmax where the spec ends with one, as
VGG-16's does). Specs with a `size` argument (the ResNets) are built at `--size`, the
others at their own input size. The difference is `max |archdsl - torch| / max |torch|`
over the batch's logits; a row passes at 1e-5 with equal argmax, or, where torch's
own float32 logits are further than that from its float64 ones (the deep ResNets),
when archdsl is within twice torch's float32 error of float64 (`float32 noise`, as in
`bench/vs_torchvision.py`). A model the importer
refuses gets a row with the refusal. Prints a Markdown table; exit status 1 if a row
fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from vs_torchvision import ZOO, Entry, torch_model  # noqa: E402

from archdsl.backend.importer import import_weights  # noqa: E402
from archdsl.backend.model import compile_graph  # noqa: E402
from archdsl.errors import ArchError  # noqa: E402
from archdsl.frontend import build_graph  # noqa: E402

TOLERANCE = 1e-5
SIZED = {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}
"""Specs with a `size` argument."""


def compare(entry: Entry, folder: Path, size: int, batch: int = 2) -> list[str]:
    """Table rows for one model: one per source format."""
    spec = ROOT / "specs" / f"{entry.spec}.arch"
    sized = entry.spec in SIZED
    graph = build_graph(spec, **({"size": size} if sized else {}))
    model = compile_graph(graph)
    net = torch_model(dataclasses.replace(entry, size=model.input_shape[0]),
                      np.random.default_rng(0))  # fmt: skip
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    x = np.random.default_rng(1).standard_normal((batch, *model.input_shape)).astype(np.float32)
    softmax = graph.node(graph.output).op.name == "softmax"  # the spec ends in its softmax
    with torch.no_grad():
        images = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        want = net(images)
        exact = net.double()(images.double())  # float64: how far float32 itself is
        if softmax:
            want, exact = torch.softmax(want, dim=1), torch.softmax(exact, dim=1)
        want, exact = want.numpy(), exact.numpy()
    noise = float(np.max(np.abs(want - exact)) / np.max(np.abs(exact)))
    sources = {"pth": folder / f"{entry.spec}.pth",
               "safetensors": folder / f"{entry.spec}.safetensors"}  # fmt: skip
    torch.save(state, sources["pth"])
    save_file(state, str(sources["safetensors"]))
    del net, state
    rows = []
    label = f"| {entry.spec} | {model.input_shape[0]} "
    for kind, path in sources.items():
        start = time.perf_counter()
        try:
            params, running, report = import_weights(graph, path)
        except ArchError as error:
            first = str(error).splitlines()[0].removeprefix("error: ")
            rows.append(f"{label}| {kind} | - | - | - | - | - | - | - | NO: {first} | - |")
            continue
        got = np.asarray(model.apply(params, running, x)[0])
        diff = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        off = float(np.max(np.abs(got - exact)) / np.max(np.abs(exact)))
        same = bool((got.argmax(1) == want.argmax(1)).all())
        # As bench/vs_torchvision.py: within 1e-5 of torch's float32, or, where float32
        # itself is further than that from float64, within twice torch's own error.
        ok = same and (diff <= TOLERANCE or off <= 2 * noise)
        verdict = "yes" if ok and diff <= TOLERANCE else "float32 noise" if ok else "NO"
        rows.append(
            f"{label}| {kind} | {report.count('name')} | {report.count('position')} | "
            f"{len(report.converted)} | {diff:.1e} | {off:.1e} | {noise:.1e} | "
            f"{'yes' if same else 'NO'} | {verdict} | {time.perf_counter() - start:.0f} |"
        )
    for path in sources.values():
        path.unlink()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="spec names (default: all)")
    parser.add_argument("--size", type=int, default=64, help="input size of sized specs")
    args = parser.parse_args()
    entries = [e for e in ZOO if not args.models or e.spec in args.models]
    print(
        "| model | input | source | tensors by name | by position | converted "
        "| max rel diff | archdsl vs float64 | torch f32 vs float64 | argmax equal | ok "
        "| seconds |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |")
    failed = 0
    with tempfile.TemporaryDirectory() as folder:
        for entry in entries:
            for row in compare(entry, Path(folder), args.size):
                failed += "| NO" in row
                print(row, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
