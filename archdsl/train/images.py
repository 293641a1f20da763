"""Images from a one-folder-per-class tree, decoded batch by batch as training asks.

`FOLDER/cat/001.jpg`, `FOLDER/dog/a.png`: class indices follow the sorted folder
names. Every file's header is read when the folder is scanned (a file that is not an
image is reported then, by path, before any training); pixels are decoded only when a
batch is taken. Each image is resized so that its shorter side fits the network's
input, then cropped to it: in the centre, or, with augmentation, at a random place
of a slightly larger resize and flipped left-right half the time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from archdsl.graph.shapes import Shape, format_shape
from archdsl.train.data import ArchDataError

EXTENSIONS = (".jpg", ".jpeg", ".png")
"""Image files taken from the class folders (case-insensitive); others are skipped."""

AUGMENT_SCALE = 1.15
"""With augmentation, the shorter side is resized to this times the crop, then cropped."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""torchvision's normalisation, for weights trained on ImageNet (`--normalize imagenet`)."""


@dataclass(frozen=True)
class ImageFolder:
    """The images of a class-folder tree as a lazy `(N, H, W, C)` float32 array.

    Indexing with a slice or an index array decodes just those images.
    """

    paths: tuple[Path, ...]
    shape: Shape
    """The per-example shape `(H, W, C)`, C 1 (grey) or 3 (RGB)."""
    augment: bool = False
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    seed: int = 0
    _calls: list[int] = field(default_factory=lambda: [0], compare=False, repr=False)

    dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def ndim(self) -> int:
        return len(self.shape) + 1

    def subset(self, index: np.ndarray) -> ImageFolder:
        """The images at `index`, still undecoded."""
        return replace(self, paths=tuple(self.paths[i] for i in np.asarray(index)), _calls=[0])

    def with_augment(self, augment: bool) -> ImageFolder:
        """The same images, augmented or not when taken."""
        return replace(self, augment=augment, _calls=[0])

    def __getitem__(self, index: slice | np.ndarray) -> np.ndarray:
        chosen = self.paths[index] if isinstance(index, slice) else [self.paths[i] for i in index]
        self._calls[0] += 1
        rng = np.random.default_rng([self.seed, self._calls[0]]) if self.augment else None
        out = np.empty((len(chosen), *self.shape), np.float32)
        for row, path in enumerate(chosen):
            out[row] = self._load(path, rng)
        return out

    def _load(self, path: Path, rng: np.random.Generator | None) -> np.ndarray:
        from PIL import Image

        h, w, c = self.shape
        try:
            with Image.open(path) as image:
                image = image.convert("L" if c == 1 else "RGB")
                scale = AUGMENT_SCALE if rng is not None else 1.0
                ratio = max(h * scale / image.height, w * scale / image.width)
                size = (max(w, round(image.width * ratio)), max(h, round(image.height * ratio)))
                image = image.resize(size, Image.Resampling.BILINEAR)
        except (OSError, ValueError) as error:
            raise ArchDataError(
                f"cannot read image `{path}`: {error}",
                help="remove or replace the file and run again",
            ) from None
        if rng is None:
            top, left = (size[1] - h) // 2, (size[0] - w) // 2
        else:
            top = int(rng.integers(0, size[1] - h + 1))
            left = int(rng.integers(0, size[0] - w + 1))
        pixels = np.asarray(image, np.float32)[top : top + h, left : left + w] / 255.0
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        if rng is not None and rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        return (pixels - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)


def scan_folder(
    folder: Path, input_shape: Shape, *, normalize: str | None = None, seed: int = 0
) -> tuple[ImageFolder, np.ndarray, tuple[str, ...]]:
    """The images, their labels and the class names of a class-folder tree.

    Raises:
        ArchDataError: no class folders, an empty class, a file that is not an image,
            or a network input that is not an image with 1 or 3 channels.
    """
    if len(input_shape) != 3 or input_shape[2] not in (1, 3):
        raise ArchDataError(
            f"an image folder needs a network input HxWx1 or HxWx3, not {format_shape(input_shape)}"
        )
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ArchDataError(
            f"`{folder}` has no class folders",
            help="put each class's images in a folder of its own: FOLDER/cat/1.jpg, FOLDER/dog/2.jpg",
        )
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted(
            p for p in (folder / name).rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
        )
        if not files:
            raise ArchDataError(
                f"class folder `{folder / name}` has no images ({', '.join(EXTENSIONS)})"
            )
        paths += files
        labels += [label] * len(files)
    _check_headers(paths)
    mean, std = _normalisation(normalize, input_shape[2])
    images = ImageFolder(tuple(paths), tuple(input_shape), mean=mean, std=std, seed=seed)
    return images, np.asarray(labels, np.int32), tuple(classes)


def _check_headers(paths: list[Path]) -> None:
    from PIL import Image, UnidentifiedImageError

    bad: list[str] = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.size  # noqa: B018 - reading the header is the check
        except (UnidentifiedImageError, OSError) as error:
            bad.append(f"`{path}`: {error.__class__.__name__}")
    if bad:
        raise ArchDataError(
            f"{len(bad)} file(s) are not readable images",
            notes=bad[:8] + (["..."] if len(bad) > 8 else []),
            help="remove or replace them and run again",
        )


def _normalisation(name: str | None, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if name is None:
        return (0.0,), (1.0,)
    if name == "imagenet" and channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    raise ArchDataError(
        f"unknown normalisation `{name}` for {channels}-channel images",
        help="`--normalize imagenet` (3 channels) or none",
    )
