"""Training from an image folder: lazy decoding, resizing and cropping, bad files by path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from archdsl.cli.main import main
from archdsl.train.data import ArchDataError, load_data
from archdsl.train.images import ImageFolder, scan_folder

TINY = """
network Tiny(classes = 2) {
    input 16x16x3
    conv 8 3x3 same as conv -> relu
    globalavgpool as pool
    dense classes as fc
}
"""


def make_folder(root: Path, per_class: int = 12, seed: int = 0) -> Path:
    """Reddish and bluish pictures of assorted sizes, as PNG and JPEG."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(("blue", "red")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = int(rng.integers(18, 40)), int(rng.integers(18, 40))
            pixels = rng.integers(0, 90, (h, w, 3))
            pixels[..., 0 if label else 2] += 160
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}{suffix}")
    (root / "red" / "notes.txt").write_text("not an image, skipped by its extension")
    return root


def test_scan_finds_classes_in_sorted_order(tmp_path) -> None:
    images, labels, classes = scan_folder(make_folder(tmp_path / "data"), (16, 16, 3))
    assert classes == ("blue", "red")
    assert len(images) == 24 and list(np.bincount(labels)) == [12, 12]
    batch = images[np.array([0, 23])]
    assert batch.shape == (2, 16, 16, 3) and batch.dtype == np.float32
    assert batch[0, ..., 2].mean() > batch[0, ..., 0].mean()  # blue
    assert batch[1, ..., 0].mean() > batch[1, ..., 2].mean()  # red
    assert batch.min() >= 0.0 and batch.max() <= 1.0


def test_images_are_decoded_only_when_taken(tmp_path, monkeypatch) -> None:
    folder = make_folder(tmp_path / "data")
    split = load_data(folder, (16, 16, 3), 2, test_fraction=0.25)
    assert isinstance(split.train.x, ImageFolder) and isinstance(split.test.x, ImageFolder)
    assert len(split.train) == 18 and len(split.test) == 6
    decoded: list[Path] = []
    original = ImageFolder._load
    monkeypatch.setattr(
        ImageFolder, "_load", lambda self, p, rng: decoded.append(p) or original(self, p, rng)
    )
    split.train.x[np.array([3, 1])]
    assert decoded == [split.train.x.paths[3], split.train.x.paths[1]]


def test_augmentation_crops_and_flips_training_images_only(tmp_path) -> None:
    split = load_data(make_folder(tmp_path / "data"), (16, 16, 3), 2, augment=True)
    assert split.train.x.augment and not split.test.x.augment
    first, second = split.train.x[np.arange(4)], split.train.x[np.arange(4)]
    assert not np.array_equal(first, second)
    assert np.array_equal(split.test.x[0:3], split.test.x[0:3])


def test_grey_input_and_imagenet_normalisation(tmp_path) -> None:
    folder = make_folder(tmp_path / "data")
    grey, _, _ = scan_folder(folder, (8, 8, 1))
    assert grey[0:2].shape == (2, 8, 8, 1)
    normal, _, _ = scan_folder(folder, (8, 8, 3), normalize="imagenet")
    plain, _, _ = scan_folder(folder, (8, 8, 3))
    np.testing.assert_allclose(
        normal[0:1],
        (
            plain[0:1]
            - 0.485 * np.array([1, 0, 0])
            - 0.456 * np.array([0, 1, 0])
            - 0.406 * np.array([0, 0, 1])
        )
        / np.array([0.229, 0.224, 0.225]),
        rtol=1e-5,
        atol=1e-6,
    )


def test_a_bad_image_is_reported_by_path(tmp_path) -> None:
    folder = make_folder(tmp_path / "data")
    bad = folder / "red" / "broken.jpg"
    bad.write_bytes(b"this is no jpeg")
    with pytest.raises(ArchDataError, match="1 file\\(s\\) are not readable images") as info:
        scan_folder(folder, (16, 16, 3))
    assert any(str(bad) in note for note in info.value.notes)


def test_a_truncated_image_is_reported_by_path_when_decoded(tmp_path) -> None:
    folder = make_folder(tmp_path / "data")
    path = folder / "blue" / "1.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header reads, the pixels do not
    images, _, _ = scan_folder(folder, (16, 16, 3))
    with pytest.raises(ArchDataError, match=f"cannot read image `{path}`"):
        images[np.arange(len(images))]


def test_folder_problems(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArchDataError, match="has no class folders"):
        scan_folder(tmp_path / "empty", (16, 16, 3))
    (tmp_path / "empty" / "cats").mkdir()
    with pytest.raises(ArchDataError, match=r"class folder `.*cats` has no images"):
        scan_folder(tmp_path / "empty", (16, 16, 3))
    with pytest.raises(ArchDataError, match="needs a network input HxWx1 or HxWx3, not 64"):
        scan_folder(tmp_path / "empty", (64,))
    folder = make_folder(tmp_path / "data")
    with pytest.raises(ArchDataError, match="2 class folders, but the network has 1 outputs"):
        load_data(folder, (16, 16, 3), 1)


def test_train_on_an_image_folder(tmp_path, capsys) -> None:
    spec = tmp_path / "tiny.arch"
    spec.write_text(TINY)
    folder = make_folder(tmp_path / "data", per_class=16)
    code = main(
        ["train", str(spec), "--data", str(folder), "--epochs", "6", "--batch-size", "8",
         "--lr", "0.02", "--augment", "--checkpoint-dir", str(tmp_path / "ck")]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "data     data: 25 training, 7 held-out examples" in out
    accuracy = float(out.split("held-out accuracy ")[1].split("%")[0])
    assert accuracy == 100.0  # red against blue: separable by colour alone
