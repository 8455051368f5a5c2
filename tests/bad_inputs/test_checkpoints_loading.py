"""Checkpoint faults through every loading path — ``--model.pretrained`` (backbone), ``--model.load_from`` (whole
model) and ``--ckpt_path`` (Lightning resume / evaluation): a truncated file, a zero-byte file, a checkpoint of
another architecture / task / class count, and a malicious pickle whose ``__reduce__`` would write a marker file.
Every case stops with exit code 2 and one message naming the file and the problem; the marker never appears.

Most cases run the CLI code in this process (``mtp.cli.main``, seconds instead of a fresh interpreter each); the
malicious ``--ckpt_path`` and the truncated backbone also run as a real ``mtp`` process.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mtp.data.synthetic import write_loveda
from mtp.models import create_backbone
from mtp.models.checkpoint_reader import CheckpointError
from mtp.tasks.segmentation import SemanticSegmentationTask
from tests.bad_inputs.conftest import assert_clear_error, run_mtp
from tests.bad_inputs.training_helpers import run_in_process, tiny_loveda_config

TINY_BACKBONE = {"embed_dim": 96, "depth": 4, "num_heads": 3, "interval": 2, "out_indices": [0, 1, 2, 3]}


class WritesMarker:
    """A pickle payload: unpickled by plain ``torch.load(weights_only=False)``, it creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Synthetic LoveDA, a tiny config, a 1-step Lightning checkpoint and the faulty files derived from it."""
    base = tmp_path_factory.mktemp("ckpt-faults")
    root, work = base / "loveda", base / "work"
    write_loveda(root, layout="release", n_train=4, n_val=2, n_test=1, size=128, seed=2)
    config = tiny_loveda_config(base / "tiny.yaml", root, work, every_n_train_steps=1)
    from mtp.cli import main

    assert main(["fit", "--config", str(config), "--trainer.max_steps", "1"]) == 0
    good = work / "checkpoints" / "last.ckpt"
    files = {"good": good, "marker": base / "MARKER"}
    data = good.read_bytes()
    files["truncated"] = base / "truncated.ckpt"
    files["truncated"].write_bytes(data[: len(data) // 3])
    files["empty"] = base / "empty.ckpt"
    files["empty"].write_bytes(b"")
    checkpoint = torch.load(good, weights_only=True)
    files["malicious"] = base / "malicious.ckpt"
    torch.save({**checkpoint, "hyper_parameters": {"x": WritesMarker(files["marker"])}}, files["malicious"])
    files["malicious_pth"] = base / "malicious.pth"
    torch.save({"state_dict": WritesMarker(files["marker"])}, files["malicious_pth"])
    other_task = {**checkpoint, "hyper_parameters": {**checkpoint["hyper_parameters"]}}
    other_task["hyper_parameters"]["_class_path"] = "mtp.tasks.classification.ClassificationTask"
    files["other_task"] = base / "other_task.ckpt"
    torch.save(other_task, files["other_task"])
    wide = create_backbone("vit_b_rvsa", img_size=128, **{**TINY_BACKBONE, "embed_dim": 48})
    files["other_arch"] = base / "vit_other_width.pth"
    torch.save({"state_dict": wide.state_dict()}, files["other_arch"])
    files["official_pth"] = base / "backbone.pth"
    torch.save({"state_dict": create_backbone("vit_b_rvsa", img_size=128, **TINY_BACKBONE).state_dict()},
               files["official_pth"])  # fmt: skip
    return config, files


def _fails(capsys, *args, fragments=()) -> str:
    code, out = run_in_process(capsys, *args)
    assert code == 2, out[-3000:]
    assert "Traceback" not in out and "Given value" not in out, out[-3000:]
    for fragment in fragments:
        assert fragment in out, f"{fragment!r} not in:\n{out[-3000:]}"
    return out


CASES = {
    "truncated": ("truncated or corrupted checkpoint",),
    "empty": ("empty file (0 bytes)",),
}


@pytest.mark.parametrize("option", ["--model.pretrained", "--model.load_from"])
@pytest.mark.parametrize("fault", ["truncated", "empty", "malicious_pth"])
def test_pretrained_and_load_from_faults(setup, capsys, option, fault):
    config, files = setup
    expected = CASES.get(fault, ("would run code when loaded", "nothing from the file was run"))
    out = _fails(capsys, "fit", "--config", config, option, files[fault], fragments=(str(files[fault]), *expected))
    assert "mtp fit: error: model (mtp.tasks.segmentation.SemanticSegmentationTask)" in out
    assert not files["marker"].exists()


def test_pretrained_of_another_architecture(setup, capsys):
    config, files = setup
    _fails(capsys, "fit", "--config", config, "--model.pretrained", files["other_arch"],
           fragments=(str(files["other_arch"]), "pos_embed"))  # fmt: skip


@pytest.mark.parametrize("fault", ["truncated", "empty", "malicious", "other_task", "official_pth"])
def test_ckpt_path_faults(setup, capsys, fault):
    config, files = setup
    expected = {
        **CASES,
        "malicious": ("would run code when loaded",),
        "other_task": ("written by mtp.tasks.classification.ClassificationTask", "SemanticSegmentationTask"),
        "official_pth": ("not a Lightning training checkpoint", "--model.load_from"),
    }[fault]
    for subcommand in ("test", "fit"):
        _fails(capsys, subcommand, "--config", config, "--ckpt_path", files[fault],
               fragments=(f"mtp {subcommand}: error:", str(files[fault]), *expected))  # fmt: skip
    assert not files["marker"].exists()


def test_malicious_ckpt_path_and_truncated_backbone_in_a_real_process(setup):
    config, files = setup
    result = run_mtp("test", "--config", config, "--ckpt_path", files["malicious"], timeout=120)
    assert_clear_error(result, str(files["malicious"]), "would run code", max_lines=12)
    assert result.returncode == 2 and not files["marker"].exists()
    result = run_mtp("fit", "--config", config, "--model.pretrained", files["truncated"], timeout=120)
    assert_clear_error(result, "model (mtp.tasks.segmentation.SemanticSegmentationTask)", "truncated", max_lines=12)


def test_ckpt_of_another_class_count_through_the_python_api(setup):
    """Without the CLI's hyper-parameter merge the model is built as configured: 2 classes against a 7-class
    checkpoint gives one message naming the task that wrote it and the mismatched head, not torch's key dump."""
    _, files = setup
    task = SemanticSegmentationTask(num_classes=2, img_size=128, backbone_kwargs=TINY_BACKBONE, decode_channels=64)
    checkpoint = torch.load(files["good"], weights_only=True)
    expected = r"does not fit SemanticSegmentationTask.*num_classes=7.*conv_seg\.weight: checkpoint \(7, 64, 1, 1\)"
    with pytest.raises(CheckpointError, match=expected):
        task.on_load_checkpoint(checkpoint)
