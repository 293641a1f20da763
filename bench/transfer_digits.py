"""The lecture's transfer experiment: pretrain in PyTorch, import, freeze, train a new head.

    python bench/transfer_digits.py [--per-class 20] [--epochs 30] [--seeds 0 1 2] [--keep DIR]

Needs torch and scikit-learn. Every archdsl step is the CLI command it prints.

1. **Pretrain in PyTorch** a small CNN (three conv + batch-norm stages, global average
   pooling, a dense classifier) on one task: scikit-learn's handwritten digits 0-4
   (about 900 images), upscaled from 8x8 to 32x32 grey. Its `state_dict` is saved as
   `pretrained.pth`, as one would download it.
2. **A different small task**: digits 5-9, written as PNG files into one folder per
   class; `--per-class` images per class are trained on and 40 per class held out
   (`--test-fraction`), the held-out images never seen by any run.
3. `archdsl import-weights digitnet.arch pretrained.pth -o pretrained.safetensors`
   into the archdsl spec of the same network (`DigitNet`).
4. `archdsl train digitnet.arch --network TransferDigitNet --init pretrained.safetensors`:
   the imported base frozen up to its pooled features (`use DigitNet upto pool frozen`)
   and a new dense head, with and without `--cache-frozen`.
5. Freezing less: the first two stages frozen (`frozen upto pool2`), or nothing
   frozen (fine-tuning from the imported weights).
6. Baselines on the same tiny data: the same spec without `--init` (a frozen random
   base), and the whole `DigitNet` trained from scratch.

Prints the held-out accuracy of each run for each seed, and the mean.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archdsl.cli.main import main as archdsl  # noqa: E402

SPEC = """\
# A small CNN, the same as bench/transfer_digits.py's PyTorch `DigitNet`, and its
# transfer: the base frozen up to its pooled features, a new head for the new task.
network DigitNet(classes = 5) {
    input 32x32x1
    conv 16 3x3 same bias = false as conv1 -> batchnorm as bn1 -> relu
    maxpool 2x2 as pool1
    conv 32 3x3 same bias = false as conv2 -> batchnorm as bn2 -> relu
    maxpool 2x2 as pool2
    conv 64 3x3 same bias = false as conv3 -> batchnorm as bn3 -> relu
    globalavgpool as pool
    dense classes as fc
}

network TransferDigitNet(classes = 5) {
    use DigitNet upto pool frozen
    dense classes as head
}

# More data, fewer frozen layers: the first two stages frozen, the third trained.
network PartFrozenDigitNet(classes = 5) {
    use DigitNet upto pool frozen upto pool2
    dense classes as head
}

# Nothing frozen: the imported weights as the starting point of fine-tuning.
network FineTunedDigitNet(classes = 5) {
    use DigitNet upto pool
    dense classes as head
}
"""
SIZE = 32
HELD_OUT = 40
"""Held-out images per class of the new task."""


def digits(labels: range) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits of `labels` as 32x32 grey uint8 images, and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    keep = np.isin(data.target, list(labels))
    images = [
        np.asarray(
            Image.fromarray((x * 255 / 16).astype(np.uint8)).resize((SIZE, SIZE), Image.BILINEAR)
        )
        for x in data.images[keep]
    ]
    return np.stack(images), data.target[keep]


def pretrain(path: Path, seed: int = 0, epochs: int = 15) -> float:
    """Train `DigitNet` in PyTorch on digits 0-4 and save its state dict; its test accuracy."""
    import torch
    from torch import nn

    class DigitNet(nn.Module):
        def __init__(self, classes: int = 5) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
            self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
            self.conv3, self.bn3 = nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64)
            self.fc = nn.Linear(64, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
            x = nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
            x = torch.relu(self.bn3(self.conv3(x)))
            return self.fc(x.mean(dim=(2, 3)))

    torch.manual_seed(seed)
    images, labels = digits(range(5))
    x = torch.from_numpy(images[:, None].astype(np.float32) / 255.0)  # as archdsl reads PNGs
    y = torch.from_numpy(labels.astype(np.int64))
    order = torch.randperm(len(x))
    test, train = order[: len(x) // 5], order[len(x) // 5 :]
    net = DigitNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(epochs):
        net.train()
        for batch in train[torch.randperm(len(train))].split(32):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        accuracy = float((net(x[test]).argmax(1) == y[test]).float().mean())
    torch.save(net.state_dict(), path)
    return accuracy


def write_folder(folder: Path, per_class: int, seed: int = 0) -> None:
    """Digits 5-9 as PNGs, one folder per class: `per_class` + `HELD_OUT` of each."""
    images, labels = digits(range(5, 10))
    rng = np.random.default_rng(seed)
    for label in range(5, 10):
        (folder / str(label)).mkdir(parents=True)
        chosen = rng.permutation(np.flatnonzero(labels == label))[: per_class + HELD_OUT]
        for i in chosen:
            Image.fromarray(images[i], "L").save(folder / str(label) / f"{i}.png")


def slug(label: str) -> str:
    """`imported-base-frozen-new-head` from a row's label, for its checkpoint folder."""
    return "-".join(re.findall(r"[a-z0-9]+", label.lower()))


def run(args: list[str], show: bool) -> str:
    """One archdsl command; its output (printed when `show`)."""
    if show:
        print("$ archdsl " + shlex.join(args), flush=True)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = archdsl(args)
    out = buffer.getvalue()
    if show:
        print("  " + "\n  ".join(out.strip().splitlines()[:4]), flush=True)
    if code != 0:
        raise SystemExit(f"archdsl {shlex.join(args)} failed:\n{out}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=20, help="training images per class")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--keep", type=Path, help="keep the files here instead of a temp folder")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = options.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        spec, pth = folder / "digitnet.arch", folder / "pretrained.pth"
        spec.write_text(SPEC)
        source_accuracy = pretrain(pth)
        print(f"PyTorch DigitNet on digits 0-4: {source_accuracy:.1%} on its held-out fifth",
              flush=True)  # fmt: skip
        data = folder / "digits5to9"
        write_folder(data, options.per_class)
        imported = folder / "pretrained.safetensors"
        run(["import-weights", str(spec), str(pth), "-o", str(imported), "--network", "DigitNet"],
            show=True)  # fmt: skip
        fraction = HELD_OUT / (HELD_OUT + options.per_class)
        common = ["--data", str(data), "--test-fraction", f"{fraction:.4f}", "--epochs",
                  str(options.epochs), "--batch-size", "25", "--lr", "0.01"]  # fmt: skip
        runs = {
            "imported base, frozen + new head": ["--network", "TransferDigitNet", "--init",
                                                 str(imported)],
            "same, --cache-frozen": ["--network", "TransferDigitNet", "--init", str(imported),
                                     "--cache-frozen"],
            "imported, frozen up to pool2": ["--network", "PartFrozenDigitNet", "--init",
                                             str(imported)],
            "imported, all fine-tuned": ["--network", "FineTunedDigitNet", "--init",
                                         str(imported)],
            "random base, frozen + new head": ["--network", "TransferDigitNet"],
            "whole DigitNet from scratch": ["--network", "DigitNet"],
        }  # fmt: skip
        results: dict[str, list[float]] = {label: [] for label in runs}
        for seed in options.seeds:
            for label, extra in runs.items():
                out = run(
                    ["train", str(spec), *extra, *common, "--seed", str(seed),
                     "--checkpoint-dir", str(folder / "runs" / f"{slug(label)}-{seed}")],
                    show=seed == options.seeds[0],
                )  # fmt: skip
                found = re.search(r"held-out accuracy ([\d.]+)%", out)
                assert found, out
                results[label].append(float(found.group(1)))
    print(
        f"\nDigits 5-9, {options.per_class} training images per class, {HELD_OUT} per class "
        f"held out; {options.epochs} epochs, seeds {options.seeds}"
    )
    print("| run | " + " | ".join(f"seed {s}" for s in options.seeds) + " | mean |")
    print("| --- | " + " | ".join("---:" for _ in options.seeds) + " | ---: |")
    for label, accuracies in results.items():
        cells = " | ".join(f"{a:.1f}%" for a in accuracies)
        print(f"| {label} | {cells} | {np.mean(accuracies):.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
