"""Resume state of a scene run: ``<prefix>.state.json`` next to the outputs, rewritten atomically after each tile row.

It holds a *fingerprint* of everything that decides the outputs (inputs with size and modification time, the
model files, family, tiling, bands and resolved scaling, blending, thresholds, precision) and what the output
handler reports as safely on disk (:meth:`checkpoint` of the handlers). ``--resume`` continues only when the
fingerprint matches, and says which setting differs otherwise. A finished run deletes its state file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mtp.inference.outputs import write_json
from mtp.inference.scene.reader import SceneInputError

__all__ = ["ResumeState", "state_path"]

log = logging.getLogger(__name__)
VERSION = 1


def _flat(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1} (so that a refusal names the exact setting)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def state_path(prefix: Path) -> Path:
    return Path(f"{prefix}.state.json")


class ResumeState:
    """Load / check / save the state of one part (see the module docstring)."""

    def __init__(self, prefix: Path, fingerprint: dict) -> None:
        self.path = state_path(prefix)
        self.fingerprint = json.loads(json.dumps(fingerprint))  # normalised like a reloaded one

    def load(self) -> dict | None:
        """The saved handler state when it matches the fingerprint; None when there is no state file. Raises
        :class:`SceneInputError` (naming the differing settings) for a state of another run."""
        if not self.path.is_file():
            return None
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise SceneInputError(f"{self.path}: unreadable resume state ({err}); run without --resume") from None
        if data.get("version") != VERSION:
            raise SceneInputError(f"{self.path}: resume state of another mtp version; run without --resume")
        saved, current = _flat(data.get("fingerprint", {})), _flat(self.fingerprint)
        differ = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if differ:
            raise SceneInputError(f"{self.path}: the interrupted run used other settings ({', '.join(differ)} differ); "
                                  "run without --resume to start again")  # fmt: skip
        return data.get("handler")

    def scaling(self) -> dict | None:
        """The resolved band scaling saved with the state (so a resumed run maps pixels identically)."""
        if not self.path.is_file():
            return None
        try:
            return json.loads(self.path.read_text()).get("scaling")
        except (OSError, json.JSONDecodeError):
            return None

    def save(self, handler: dict, scaling: dict) -> None:
        write_json({"version": VERSION, "fingerprint": self.fingerprint, "scaling": scaling, "handler": handler},
                   self.path)  # fmt: skip

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
