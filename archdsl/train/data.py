"""Training data: load `digits`, a `.npz` or an image folder, fit it to the network, split it.

Examples are float32 arrays `(N, *input_shape)`, labels int32 class indices. Every
problem with the data is an `ArchDataError` raised before any training starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from archdsl.errors import ArchValueError
from archdsl.graph.shapes import Shape, format_shape

if TYPE_CHECKING:
    from archdsl.train.images import ImageFolder


class ArchDataError(ArchValueError):
    """Training data that cannot be used with this network."""


DIGITS: Final = "digits"
"""The name of scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download)."""

NPZ_HELP: Final = (
    "an .npz needs arrays `x` (N, H, W, C) and `y` (N,) of integer labels 0..classes-1; "
    "optionally `x_test` and `y_test` for the held-out split"
)


@dataclass(frozen=True)
class Dataset:
    """Examples and their labels, ready to batch."""

    x: np.ndarray | ImageFolder
    """float32, `(N, *input_shape)`; an `ImageFolder` decodes images as they are indexed."""
    y: np.ndarray
    """int32, `(N,)`, each in `[0, classes)`."""
    name: str = ""

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: np.ndarray) -> Dataset:
        """The examples at `index`, in that order."""
        x: Any = self.x[index] if isinstance(self.x, np.ndarray) else self.x.subset(index)
        return Dataset(x, self.y[index], self.name)


@dataclass(frozen=True)
class Split:
    """The examples trained on and the held-out ones evaluated each epoch."""

    train: Dataset
    test: Dataset


def load_data(
    source: str | Path,
    input_shape: Shape,
    classes: int,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    augment: bool = False,
    normalize: str | None = None,
) -> Split:
    """Load `digits`, a `.npz` file or an image folder, fit it to the network, split it.

    Args:
        source: `"digits"`, the path of an `.npz` file (see `NPZ_HELP`) or of a folder
            with one subfolder of images per class (`archdsl.train.images`).
        input_shape: the network's per-example input shape.
        classes: the size of the network's output; labels must be below it.
        test_fraction: the share held out when the data has no `x_test`.
        seed: the seed of the split (stratified by class where every class allows).
        augment: random crops and flips of the training images (image folders only).
        normalize: `"imagenet"` to normalise images as torchvision's pretrained
            weights expect (image folders only).

    Raises:
        ArchDataError: the data is missing, malformed or does not fit the network.
    """
    if str(source) == DIGITS:
        x, y = load_digits(input_shape)
        return split(Dataset(x, check_labels(y, classes, DIGITS), DIGITS), test_fraction, seed)
    path = Path(source)
    if path.is_dir():
        return _load_folder(path, input_shape, classes, test_fraction, seed, augment, normalize)
    if augment or normalize:
        raise ArchDataError("`--augment` and `--normalize` apply to image folders only")
    arrays = _read_npz(path)
    x = check_examples(arrays["x"], input_shape, f"{path.name}: `x`")
    y = check_labels(arrays["y"], classes, f"{path.name}: `y`")
    _same_length(x, y, path.name, "x", "y")
    data = Dataset(x, y, path.name)
    if "x_test" in arrays or "y_test" in arrays:
        if not ("x_test" in arrays and "y_test" in arrays):
            raise ArchDataError(f"{path.name} has only one of `x_test` and `y_test`", help=NPZ_HELP)
        xt = check_examples(arrays["x_test"], input_shape, f"{path.name}: `x_test`")
        yt = check_labels(arrays["y_test"], classes, f"{path.name}: `y_test`")
        _same_length(xt, yt, path.name, "x_test", "y_test")
        return Split(data, Dataset(xt, yt, path.name))
    return split(data, test_fraction, seed)


def _load_folder(
    path: Path,
    input_shape: Shape,
    classes: int,
    test_fraction: float,
    seed: int,
    augment: bool,
    normalize: str | None,
) -> Split:
    from archdsl.train.images import scan_folder

    images, labels, names = scan_folder(path, input_shape, normalize=normalize, seed=seed)
    if len(names) > classes:
        raise ArchDataError(
            f"`{path}` has {len(names)} class folders, but the network has {classes} outputs",
            notes=[f"classes: {', '.join(names[:10])}" + (", ..." if len(names) > 10 else "")],
            help=f"build the network with `--arg classes={len(names)}`",
        )
    parts = split(Dataset(images, labels, path.name), test_fraction, seed)
    if not augment:
        return parts
    train = parts.train
    assert not isinstance(train.x, np.ndarray)
    return Split(Dataset(train.x.with_augment(True), train.y, train.name), parts.test)


DIGITS_COUNT: Final = 1797
"""Images in scikit-learn's digits data set."""
DIGITS_MISSING: Final = (
    "`--data digits` needs scikit-learn, which bundles the images: "
    '`pip install scikit-learn` (or `pip install "archdsl[digits]"`)'
)


def load_digits(input_shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits, scaled to [0, 1] and resized to `input_shape`.

    `(H, W, C)` inputs get a bilinear resize (`jax.image.resize`) with the grey level
    repeated over the channels; a flat `(64,)` input takes the 8x8 pixels as they are.
    The memory the resized images need is checked before anything is allocated.

    Raises:
        ArchDataError: an input shape the digits cannot be fitted to, one too large
            for memory, or scikit-learn missing.
    """
    if len(input_shape) == 3:
        _check_digits_memory(input_shape)
    elif not (len(input_shape) == 1 and input_shape[0] == 64):
        raise ArchDataError(
            f"the digits are 8x8 images; the network takes {format_shape(input_shape)}",
            help="use a network whose input is HxWxC (e.g. 32x32x1) or 64",
        )
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise ArchDataError(DIGITS_MISSING) from None

    bunch = sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0  # pixel values are 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    if len(input_shape) == 1:
        return images.reshape(len(images), 64), labels
    import jax
    import jax.numpy as jnp

    h, w, c = input_shape
    resized = jax.image.resize(jnp.asarray(images), (len(images), h, w), method="bilinear")
    x = np.asarray(resized, dtype=np.float32)[..., None]
    return np.repeat(x, c, axis=-1) if c != 1 else x, labels


def _check_digits_memory(input_shape: Shape) -> None:
    """The resize holds the grey images twice (device and host) plus the C-channel copy."""
    from archdsl.io import ArchIOError, check_memory

    h, w, c = input_shape
    grey = DIGITS_COUNT * h * w * 4
    try:
        check_memory(2 * grey + (grey * c if c != 1 else 0), f"`--data digits` at {h}x{w}x{c}")
    except ArchIOError as error:
        raise ArchDataError(
            error.message,
            notes=error.notes,
            help=f"the {DIGITS_COUNT} images are resized up front to the network's input; "
            "use a smaller input, or an .npz of your own data",
        ) from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    from archdsl.io import ArchIOError
    from archdsl.io.arrays import load_npz

    if path.suffix != ".npz":
        raise ArchDataError(
            f"unknown data `{path}`: expected `digits`, an .npz file or an image folder",
            help=NPZ_HELP,
        )
    try:
        arrays = load_npz(path, "data file")
    except ArchIOError as error:
        raise ArchDataError(error.message, notes=error.notes, help=error.help or NPZ_HELP) from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise ArchDataError(
            f"{path.name} has no array {' or '.join(f'`{k}`' for k in missing)}; "
            f"it has {', '.join(f'`{k}`' for k in arrays) or 'none'}",
            help=NPZ_HELP,
        )
    return arrays


def check_examples(x: np.ndarray, input_shape: Shape, what: str) -> np.ndarray:
    """Examples as float32 `(N, *input_shape)`; `uint8` images are scaled to [0, 1].

    A single-channel `(N, H, W)` array gets its channel axis added.

    Raises:
        ArchDataError: wrong shape, a non-numeric dtype, NaN or infinity, no examples.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise ArchDataError(f"{what} has dtype {x.dtype}; expected numbers")
    if x.ndim == len(input_shape) and input_shape[-1:] == (1,) and len(input_shape) == 3:
        x = x[..., None]
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != tuple(input_shape):
        got = (
            f"{format_shape(tuple(x.shape[1:]))} examples"
            if x.ndim > 1
            else (f"shape {tuple(x.shape)}")
        )
        raise ArchDataError(
            f"{what} holds {got}; the network takes {format_shape(input_shape)}",
            notes=[f"the array's shape is {tuple(x.shape)}, batch axis first"],
            help=f"give `x` the shape (N, {', '.join(map(str, input_shape))}) "
            "(NHWC: height, width, channels)",
        )
    if len(x) == 0:
        raise ArchDataError(f"{what} has no examples")
    scaled = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    bad = ~np.isfinite(scaled)
    if bad.any():
        examples = np.flatnonzero(bad.reshape(len(x), -1).any(axis=1))
        kind = "NaN" if np.isnan(scaled).any() else "infinite"
        raise ArchDataError(
            f"{what} has {int(bad.sum())} {kind} value{'s' if bad.sum() != 1 else ''} "
            f"in {len(examples)} example{'s' if len(examples) != 1 else ''}",
            notes=[f"the first is example {int(examples[0])}"],
            help="drop or repair those examples before training",
        )
    return scaled


def check_labels(y: np.ndarray, classes: int, what: str) -> np.ndarray:
    """Labels as int32 `(N,)`, each in `[0, classes)`.

    Raises:
        ArchDataError: not integers, not one per example, or out of range.
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ArchDataError(
            f"{what} has shape {tuple(y.shape)}; expected one class index per example (N,)",
            help="labels are integers 0..classes-1, not one-hot rows" if y.ndim == 2 else None,
        )
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise ArchDataError(f"{what} has NaN or infinite labels")
        if (y != np.round(y)).any():
            raise ArchDataError(
                f"{what} has labels that are not whole numbers",
                help="labels are class indices 0..classes-1",
            )
    elif y.dtype.kind not in "biu":
        raise ArchDataError(f"{what} has dtype {y.dtype}; expected integer class indices")
    if len(y) == 0:
        raise ArchDataError(f"{what} has no labels")
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        bad = low if low < 0 else high
        raise ArchDataError(
            f"{what} has label {bad}, but the network has {classes} output"
            f"{'s' if classes != 1 else ''} (classes 0..{classes - 1})",
            notes=[f"labels range over {low}..{high}"],
            help=f"build the network with `--arg classes={high + 1}`" if low >= 0 else None,
        )
    return y.astype(np.int32)


def _same_length(x: np.ndarray, y: np.ndarray, file: str, xname: str, yname: str) -> None:
    if len(x) != len(y):
        raise ArchDataError(
            f"{file}: `{xname}` has {len(x)} examples but `{yname}` has {len(y)} labels"
        )


def split(data: Dataset, test_fraction: float, seed: int) -> Split:
    """Hold out `test_fraction` of the examples, stratified by class where possible
    (every class with at least two examples, and at least one test example per class).

    Raises:
        ArchDataError: too few examples for both parts.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ArchDataError(f"the test fraction must be in (0, 1), got {test_fraction}")
    n = len(data)
    n_test = math.ceil(n * test_fraction)
    if n_test < 1 or n - n_test < 1:
        raise ArchDataError(
            f"{data.name or 'the data'} has {n} examples: too few to hold out "
            f"{test_fraction:.0%} for testing"
        )
    counts = np.bincount(data.y)
    present = counts[counts > 0]
    rng = np.random.default_rng(seed)
    if present.min() >= 2 and n_test >= len(present):
        test_index = _stratified(data.y, n_test, rng)
    else:
        test_index = rng.permutation(n)[:n_test]
    test_mask = np.zeros(n, bool)
    test_mask[test_index] = True
    return Split(data.take(np.flatnonzero(~test_mask)), data.take(np.flatnonzero(test_mask)))


def _stratified(y: np.ndarray, n_test: int, rng: np.random.Generator) -> np.ndarray:
    """`n_test` indices with each class in proportion (largest remainders round up)."""
    classes, counts = np.unique(y, return_counts=True)
    share = counts * n_test / len(y)
    take = np.floor(share).astype(int)
    order = np.argsort(-(share - take), kind="stable")
    take[order[: n_test - int(take.sum())]] += 1
    take = np.minimum(take, counts - 1)  # keep each class in training too
    short = n_test - int(take.sum())
    chosen = [
        rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take, strict=True)
    ]
    index = np.concatenate(chosen)
    if short > 0:
        rest = np.setdiff1d(np.arange(len(y)), index)
        index = np.concatenate([index, rng.permutation(rest)[:short]])
    return index


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of the examples in one epoch: a function of seed and epoch only,
    so that a resumed run sees the same batches as an uninterrupted one."""
    return np.random.default_rng([seed, epoch]).permutation(n)
