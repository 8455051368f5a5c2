"""Writing checkpoint files so that a crash, ``kill -9`` or a full disk never leaves a broken file under a final name.

One writer for every checkpoint ``mtp`` produces (Lightning's ``*.ckpt`` through
:class:`mtp.tasks.checkpoint_io.SafeCheckpointIO`, the official-layout pretraining files, ``mtp tool`` outputs):

1. serialise with :func:`torch.save` into a temporary file **in the target folder**
   (``.<name>.<host>-<pid>.mtp-partial``), so the final step is a rename on one filesystem, never a copy;
2. flush and ``fsync`` the file;
3. ``os.replace`` it onto the final name (atomic on POSIX and Windows);
4. ``fsync`` the folder so that the rename itself survives a power cut.

If anything fails (``ENOSPC``, an exception, a signal), the temporary file is removed and the previous file under
the final name is untouched. A process killed with ``SIGKILL`` cannot clean up: its temporary file stays behind
as an *orphan*; :func:`remove_orphan_partial_files` deletes those of dead processes at the next start-up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

__all__ = [
    "PARTIAL_SUFFIX",
    "atomic_torch_save",
    "non_finite_tensors",
    "partial_file_name",
    "remove_orphan_partial_files",
]

PARTIAL_SUFFIX = ".mtp-partial"
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?P<host>[^.]+)-(?P<pid>\d+)" + re.escape(PARTIAL_SUFFIX) + r"$")
#: A partial file not modified for this long is an orphan whatever process wrote it (another host, pid reuse).
STALE_AFTER_S = 3600.0


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def partial_file_name(final: str | Path) -> Path:
    """The temporary name :func:`atomic_torch_save` writes ``final`` under (same folder, hidden)."""
    final = Path(final)
    return final.with_name(f".{final.name}.{_host()}-{os.getpid()}{PARTIAL_SUFFIX}")


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (see the module docstring); returns ``path``.

    Raises:
        OSError: the folder cannot be created or written, or the disk is full; the message names ``path``.
            Whatever was under ``path`` before is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_file_name(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) and str(path) not in str(err):
            raise OSError(err.errno, f"cannot write checkpoint {path}: {err.strerror or err}") from err
        raise
    _fsync_folder(path.parent)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _orphans(folder: Path) -> Iterator[Path]:
    host, now = _host(), time.time()
    for entry in folder.iterdir():
        match = _PARTIAL.match(entry.name)
        if match is None or not entry.is_file():
            continue
        pid = int(match["pid"])
        if pid == os.getpid() and match["host"] == host:
            continue  # our own write in progress
        dead_here = match["host"] == host and not _pid_alive(pid)
        try:
            stale = now - entry.stat().st_mtime > STALE_AFTER_S
        except FileNotFoundError:
            continue
        if dead_here or stale:
            yield entry


def remove_orphan_partial_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files that interrupted :func:`atomic_torch_save` calls left in ``folder``.

    Only files named ``.<name>.<host>-<pid>.mtp-partial`` are considered, and only when the process that wrote
    them is gone (same host) or they have not changed for an hour. Returns the removed paths (logged).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for orphan in _orphans(folder):
        with contextlib.suppress(FileNotFoundError):
            orphan.unlink()
            removed.append(orphan)
            log.warning("removed %s: left by an interrupted checkpoint write (the process is gone)", orphan)
    return removed


def non_finite_tensors(state_dict: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors in ``state_dict`` holding NaN or ±inf (in state-dict order)."""
    bad = []
    for name, value in state_dict.items():
        if isinstance(value, Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad.append(name)
    return bad
