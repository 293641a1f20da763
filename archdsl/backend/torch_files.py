"""Read a PyTorch-layout state dict, `.pth`/`.pt` or `.safetensors`, into NumPy, in file order.

Matching by structure relies on the order: a `.pth` keeps the order in which the
source's modules hold their tensors (PyTorch's `state_dict` follows registration). A
safetensors file does not (`save_file` lays tensors out by dtype and name), so its
names are put in natural order, numbers as numbers (`features.8` before
`features.10`), which is registration order for `nn.Sequential` and nested blocks.
Safetensors files are parsed here, not by `safetensors.numpy`, so that bfloat16 (how
the hub ships many weights) reads without torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from archdsl.backend.weights import ArchWeightsError

TORCH_HELP = "install it with `pip install 'archdsl[torch]'`, or convert the file to safetensors"

_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

_WRAPPERS = ("state_dict", "model", "model_state_dict", "module", "net")
"""Keys under which training scripts often nest the state dict in a checkpoint."""


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state dict file, by name, in the file's order.

    Floating tensors become float32; integer ones (`num_batches_tracked`) keep their type.

    Raises:
        ArchWeightsError: the file is missing, unreadable, of an unknown kind, or a
            `.pth` when torch is not installed.
    """
    path = Path(path)
    if not path.is_file():
        raise ArchWeightsError(
            f"`{path}` does not exist" if not path.exists() else f"`{path}` is not a file"
        )
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        return _read_torch(path)
    raise ArchWeightsError(
        f"`{path}`: expected a PyTorch state dict (`.pth`, `.pt`) or a `.safetensors` file",
        help="rename the file if it is one of these",
    )


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    try:
        size = int.from_bytes(data[:8], "little")
        if len(data) < 8 or size > len(data) - 8:
            raise ValueError("the header is cut short")
        header = json.loads(data[8 : 8 + size])
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (ValueError, UnicodeDecodeError) as error:
        raise ArchWeightsError(f"`{path}` is not a safetensors file: {error}") from None
    header.pop("__metadata__", None)
    body = memoryview(data)[8 + size :]
    entries = sorted(header.items(), key=lambda item: natural_key(item[0]))
    out: dict[str, np.ndarray] = {}
    for name, entry in entries:
        dtype, shape = entry["dtype"], tuple(entry["shape"])
        start, end = entry["data_offsets"]
        raw = body[start:end]
        if dtype == "BF16":
            bits = np.frombuffer(raw, np.dtype("<u2")).astype(np.uint32) << 16
            array = bits.view(np.float32)
        elif dtype in _DTYPES:
            array = np.frombuffer(raw, _DTYPES[dtype])
        else:
            raise ArchWeightsError(f"`{path}`: tensor `{name}` has dtype {dtype}, not supported")
        out[name] = _float32(array.reshape(shape))
    return out


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ArchWeightsError(
            f"reading `{path}` needs PyTorch, which is not installed", help=TORCH_HELP
        ) from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle and zip errors of every kind
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArchWeightsError(
            f"cannot read `{path}` as a PyTorch state dict: {first}",
            help="save the weights alone: `torch.save(model.state_dict(), path)`",
        ) from None
    for key in _WRAPPERS:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise ArchWeightsError(
            f"`{path}` holds a {type(loaded).__name__}, not a state dict of tensors",
            help="save the weights alone: `torch.save(model.state_dict(), path)`",
        )
    out: dict[str, np.ndarray] = {}
    for name, tensor in loaded.items():
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()
        out[str(name)] = tensor.numpy().copy()
    return out


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key for dotted names with numbers compared as numbers: `a.2` < `a.10`."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in name.split("."))


def _float32(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float32) if np.issubdtype(array.dtype, np.floating) else array.copy()
