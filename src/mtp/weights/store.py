"""Where catalogue files live, their recorded checksums, the ``.safetensors`` copies and direct downloads.

Layout: ``$MTP_HOME`` (default ``~/.cache/mtp``) / ``Weights.relpath`` — the official file name, fine-tuned files
in a folder named after their official config. ``$MTP_HOME/hashes.json`` records, per file, the sha256, size and
modification time seen on first use (first load, ``verify``, ``convert`` or ``download``). Later loads compare size
and time and re-hash a file whose size or time changed; ``verify`` always re-hashes. A different hash is an error
(:class:`WeightsIntegrityError`) until the record is reset (``mtp weights verify NAME --reset``). ``convert`` writes
``<stem>.safetensors`` next to the file, once; loads then prefer it (no unpickling, memory-mapped reading).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mtp.weights.catalogue import CATALOGUE, Weights

log = logging.getLogger(__name__)

HASHES_FILE = "hashes.json"
_CHUNK = 1 << 22


class WeightsError(Exception):
    """Base of the catalogue errors; the message says what to do."""


class UnknownWeightsError(WeightsError, ValueError):
    """A name that is not in the catalogue (the message lists close matches)."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """A catalogue file is not on disk (the message says what to download from where, and where to put it)."""


class WeightsIntegrityError(WeightsError, ValueError):
    """A file's sha256 differs from the one recorded on first use."""


def mtp_home(home: str | os.PathLike | None = None) -> Path:
    """``home``, else ``$MTP_HOME``, else ``~/.cache/mtp``."""
    return Path(home or os.environ.get("MTP_HOME") or Path.home() / ".cache" / "mtp").expanduser()


def get_weights(name: str) -> Weights:
    """The catalogue entry ``name``; unknown names fail with the closest matches."""
    if name in CATALOGUE:
        return CATALOGUE[name]
    close = difflib.get_close_matches(name, list(CATALOGUE), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownWeightsError(f"unknown weights {name!r}{hint} (`mtp weights list` shows all {len(CATALOGUE)})")


def expected_path(name: str, home: str | os.PathLike | None = None) -> Path:
    """Where the official file of ``name`` goes (whether or not it is there)."""
    return mtp_home(home) / get_weights(name).relpath


def safetensors_path(name: str, home: str | os.PathLike | None = None) -> Path:
    """Where ``convert`` writes the ``.safetensors`` copy of ``name``."""
    return expected_path(name, home).with_suffix(".safetensors")


def missing_message(entry: Weights, home: str | os.PathLike | None = None) -> str:
    """What to download from where and where to put it."""
    root = mtp_home(home)
    path = root / entry.relpath
    pages = "\n".join(f"  {label}: {url}" for label, url in entry.pages)
    download = f" (or run `mtp weights download {entry.name}`)" if entry.url else ""
    return (
        f"{entry.name} ({entry.label}) is not on this machine: {path} does not exist.\n"
        f"Download {entry.filename} from {entry.where}:\n{pages}\n"
        f"and put it at {path}{download};\n"
        f"MTP_HOME={root} (set MTP_HOME to use another folder), or pass the file's path instead of the name."
    )


# ----------------------------------------------------------------------------- hashes
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_hashes(home: str | os.PathLike | None = None) -> dict[str, dict]:
    """``{relpath: {"sha256", "size", "mtime_ns", "recorded"}}`` from ``$MTP_HOME/hashes.json``."""
    path = mtp_home(home) / HASHES_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WeightsError(f"{path}: unreadable checksum record ({err}); fix or delete the file") from err
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        raise WeightsError(f"{path}: not a checksum record (expected {{'files': {{...}}}}); fix or delete the file")
    return files


def _write_hashes(files: dict[str, dict], home: str | os.PathLike | None) -> None:
    path = mtp_home(home) / HASHES_FILE
    try:
        _atomic_write_text(path, json.dumps({"version": 1, "files": files}, indent=1, sort_keys=True) + "\n")
    except OSError as err:  # a read-only shared cache must not stop a load
        log.warning("%s: cannot record checksums (%s)", path, err)


@dataclass(frozen=True)
class Check:
    """Outcome of checking one file: ``status`` is 'recorded' (first use), 'verified' (re-hashed, equal) or
    'unchanged' (same size and time as recorded: not re-hashed)."""

    path: Path
    sha256: str
    status: str


def check_file(path: Path, home: str | os.PathLike | None = None, *, full: bool = False) -> Check:
    """Record ``path``'s sha256 on first use, compare it afterwards (``full``: always re-hash)."""
    root = mtp_home(home)
    rel = path.relative_to(root).as_posix()
    stat = path.stat()
    files = read_hashes(home)
    known = files.get(rel)
    if known and not full and known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns:
        return Check(path, known["sha256"], "unchanged")
    digest = sha256_file(path)
    if known and known.get("sha256") != digest:
        raise WeightsIntegrityError(
            f"{path}: sha256 {digest} differs from {known['sha256']} recorded on {known.get('recorded', '?')} "
            f"({root / HASHES_FILE}); the file changed since its first use. Download it again, or accept the new "
            f"file with `mtp weights verify NAME --reset`."
        )
    stamp = known.get("recorded") if known else time.strftime("%Y-%m-%d %H:%M:%S")
    files[rel] = {"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "recorded": stamp}
    _write_hashes(files, home)
    return Check(path, digest, "verified" if known else "recorded")


def forget(name: str, home: str | os.PathLike | None = None) -> list[str]:
    """Drop the recorded checksums of ``name``'s file and copy; returns the dropped relpaths."""
    root, files = mtp_home(home), read_hashes(home)
    rels = [p.relative_to(root).as_posix() for p in (expected_path(name, home), safetensors_path(name, home))]
    dropped = [r for r in rels if files.pop(r, None) is not None]
    if dropped:
        _write_hashes(files, home)
    return dropped


# ----------------------------------------------------------------------------- resolution
def weights_path(name: str, home: str | os.PathLike | None = None, *, check: bool = True) -> Path:
    """The file to load for ``name``: the ``.safetensors`` copy when there is one, else the official file.

    Raises :class:`WeightsNotFoundError` (what to download, from where, to where) when neither exists, and
    :class:`WeightsIntegrityError` when a file changed since its checksum was recorded (``check``).
    """
    entry, original, copy = get_weights(name), expected_path(name, home), safetensors_path(name, home)
    present = [p for p in (copy, original) if p.is_file()]
    if not present:
        raise WeightsNotFoundError(missing_message(entry, home))
    if check:
        for path in present:
            check_file(path, home)
    return present[0]


def verify(name: str, home: str | os.PathLike | None = None) -> list[Check]:
    """Re-hash the official file and its ``.safetensors`` copy (those present) against the records."""
    entry = get_weights(name)
    paths = [p for p in (expected_path(name, home), safetensors_path(name, home)) if p.is_file()]
    if not paths:
        raise WeightsNotFoundError(missing_message(entry, home))
    return [check_file(p, home, full=True) for p in paths]


@contextmanager
def _partial_file(dest: Path) -> Iterator[Path]:
    """A temporary file next to ``dest`` that replaces it on success and disappears on failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def convert(name: str, home: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """Write the ``.safetensors`` copy of ``name`` (its tensors, read with mtp's safe reader) once.

    Returns ``(path, written)``; ``written`` is False when a copy exists already. The official file is checked
    against its record first; the copy's metadata names its source file and sha256.
    """
    from safetensors.torch import save_file

    from mtp.models.checkpoint_reader import extract_state_dict, read_checkpoint

    entry, original, copy = get_weights(name), expected_path(name, home), safetensors_path(name, home)
    if copy.is_file():
        check_file(copy, home)
        return copy, False
    if not original.is_file():
        raise WeightsNotFoundError(missing_message(entry, home))
    source = check_file(original, home, full=True)
    state = extract_state_dict(read_checkpoint(original), original)
    seen: set[tuple[int, int]] = set()
    tensors = {}
    for key, value in state.items():
        value = value.detach().contiguous()
        storage = (value.untyped_storage().data_ptr(), value.storage_offset())
        if value.numel() and storage in seen:  # safetensors refuses shared memory: give duplicates their own
            value = value.clone()
        seen.add(storage)
        tensors[key] = value
    metadata = {"catalogue_name": name, "source": entry.filename, "source_sha256": source.sha256}
    with _partial_file(copy) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    check_file(copy, home)
    log.info("%s: wrote %s (%d tensors)", name, copy, len(tensors))
    return copy, True


def download(
    name: str, home: str | os.PathLike | None = None, *, url: str | None = None, timeout: float = 60.0
) -> Path:
    """Fetch ``name`` from its direct link (or ``url``, e.g. a mirror) into ``$MTP_HOME``; returns the path.

    The transfer goes to a temporary file that replaces the destination only when complete (size checked
    against ``Content-Length``); the sha256 is then recorded. Entries without a direct link fail with the
    pages to download from by hand.
    """
    entry, dest = get_weights(name), expected_path(name, home)
    source = url or entry.url
    if source is None:
        raise WeightsError(f"{name} has no direct download link.\n" + missing_message(entry, home))
    if dest.is_file():
        check_file(dest, home)
        return dest
    log.info("%s: downloading %s -> %s", name, source, dest)
    try:
        with urllib.request.urlopen(source, timeout=timeout) as response, _partial_file(dest) as tmp:
            expected = response.headers.get("Content-Length")
            received = 0
            with open(tmp, "wb") as f:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    f.write(block)
                    received += len(block)
            if expected is not None and received != int(expected):
                raise WeightsError(f"{name}: download from {source} stopped at {received} of {expected} bytes")
    except OSError as err:  # URLError, HTTPError, timeouts, connection resets
        raise WeightsError(f"{name}: download from {source} failed ({err}); nothing was written") from err
    check_file(dest, home)
    return dest
