"""Reading checkpoint files without executing code from them.

Files are read with ``torch.load(weights_only=True)``; pickled objects are never given the power
to import or run arbitrary code. The official files contain more than tensors: optimizer and
scheduler states (fine under ``weights_only``), numpy arrays (``loss_pretrain`` in the MTP
pretraining files; allowlisted below: numpy's own array/dtype reconstruction only), and, in
mmengine checkpoints, instances of OpenMMLab classes (e.g. ``HistoryBuffer`` in
``message_hub``). Those classes are *not* imported: every global outside the allowlist is
replaced by :class:`InertObject`, which only records the arguments it was given. Whatever the
file says, no foreign code runs.

``.safetensors`` files are read with the safetensors library.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and the problem."""


class InertObject:
    """Stand-in for an object of a class we refuse to import while unpickling.

    It accepts any constructor arguments and pickled state and does nothing with them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"InertObject(args={len(self.args)}, state={type(self.state).__name__})"


def _numpy_safe_globals() -> list[tuple[Any, str]]:
    """numpy's array / scalar / dtype reconstruction under its numpy-1 and numpy-2 names."""
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    pairs: list[tuple[Any, str]] = []
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        pairs += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    pairs += [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for name in dir(np.dtypes):
        obj = getattr(np.dtypes, name)
        if isinstance(obj, type) and issubclass(obj, np.dtype):
            pairs.append((obj, f"numpy.dtypes.{name}"))
    return pairs


def _torch_load(path: Path, extra_globals: list[tuple[Any, str]]) -> Any:
    with torch.serialization.safe_globals(_numpy_safe_globals() + extra_globals):
        return torch.load(path, map_location="cpu", weights_only=True)


def _reason(err: Exception) -> str:
    """The informative line of torch's long weights_only error."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    hits = [line for line in lines if "GLOBAL" in line]
    return (hits or lines or [type(err).__name__])[0]


def read_checkpoint(path: str | Path) -> Any:
    """Load a checkpoint file safely (see the module docstring) and return its top-level object."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes): the write or download that produced it did not finish")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err
    try:
        return _torch_load(path, [])
    except pickle.UnpicklingError:
        pass  # globals outside the allowlist: replace them by InertObject below
    except Exception as err:
        if "central directory" in str(err) or isinstance(err, EOFError):
            raise CheckpointError(
                f"{path}: truncated or corrupted checkpoint ({size} bytes; the zip archive is incomplete): an "
                "interrupted write, copy or download; use an intact copy"
            ) from err
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(err).__name__}: {_reason(err)})") from err
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as err:
        raise CheckpointError(f"{path}: cannot inspect the pickled objects ({err})") from err
    log.info("%s: replacing %d non-tensor classes by inert objects: %s", path, len(names), ", ".join(names))
    try:
        return _torch_load(path, [(InertObject, name) for name in names])
    except Exception as err:
        raise CheckpointError(
            f"{path}: refused: it holds pickled objects that would run code when loaded ({_reason(err)}); "
            "nothing from the file was run"
        ) from err


def extract_state_dict(obj: Any, path: str | Path) -> dict[str, Tensor]:
    """The tensor state dict inside a loaded checkpoint.

    Order of preference, as the official loaders: ``state_dict``, then ``model``, then the
    object itself. Non-tensor entries are dropped.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: top-level object is a {type(obj).__name__}, not a dict of tensors")
    for key in ("state_dict", "model"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        keys = ", ".join(map(str, list(obj)[:10]))
        raise CheckpointError(f"{path}: contains no tensors (top-level keys: {keys})")
    return state
