"""Atomic checkpoints: a crash or a full disk in the middle of a write, and ``kill -9`` while a large checkpoint is
being written, leave the previous ``last.ckpt`` intact and loadable and no partial file under a final name; the
orphan partial file of a killed writer is removed at the next start-up; non-finite weights are never written."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import textwrap
import time

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from mtp.models.checkpoint_writer import PARTIAL_SUFFIX, partial_file_name, remove_orphan_partial_files
from mtp.tasks.callbacks import SafeInterrupt
from mtp.tasks.checkpoint_io import NonFiniteWeightsError, SafeCheckpointIO
from tests.bad_inputs.conftest import REPO
from tests.lightning_fixtures import BackboneRegression, RandomImages


def _fit(folder, max_steps: int, ckpt_path=None) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, default_root_dir=folder, plugins=[SafeCheckpointIO()], callbacks=[SafeInterrupt(),
        ModelCheckpoint(dirpath=folder, every_n_train_steps=1, save_last=True, save_top_k=-1)],
    )  # fmt: skip
    trainer.fit(BackboneRegression(), RandomImages(n=8, batch_size=2), ckpt_path=ckpt_path)
    return trainer


def _half_written_then_disk_full(obj, f, *args, **kwargs):
    """torch.save that writes half of the bytes, then fails as a full disk does."""
    buffer = io.BytesIO()
    _real_save(obj, buffer)
    f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    raise OSError(errno.ENOSPC, "No space left on device")


_real_save = torch.save


def test_disk_full_in_the_middle_of_a_write_keeps_the_previous_last_ckpt(tmp_path, monkeypatch):
    _fit(tmp_path, max_steps=2)
    last = tmp_path / "last.ckpt"
    before = last.read_bytes()
    assert torch.load(last, weights_only=True)["global_step"] == 2
    monkeypatch.setattr(torch, "save", _half_written_then_disk_full)
    with pytest.raises(OSError, match=r"cannot write checkpoint .*step=3\.ckpt: No space left on device"):
        _fit(tmp_path, max_steps=3, ckpt_path=last)
    monkeypatch.setattr(torch, "save", _real_save)
    assert last.read_bytes() == before and torch.load(last, weights_only=True)["global_step"] == 2
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["epoch=0-step=1.ckpt", "epoch=0-step=2.ckpt", "last.ckpt"], names  # nothing half-written


def test_non_finite_weights_are_never_written_over_a_good_checkpoint(tmp_path):
    good = {"state_dict": {"w": torch.ones(3)}, "pytorch-lightning_version": "2"}
    io_plugin = SafeCheckpointIO()
    io_plugin.save_checkpoint(good, tmp_path / "last.ckpt")
    bad = {"state_dict": {"w": torch.tensor([1.0, float("nan"), 2.0]), "b": torch.zeros(1)}}
    with pytest.raises(NonFiniteWeightsError, match=r"refusing to write .*last\.ckpt: 1 of 2 weight tensors hold NaN"):
        io_plugin.save_checkpoint(bad, tmp_path / "last.ckpt")
    assert torch.equal(torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]["w"], torch.ones(3))
    assert io_plugin.last_saved == tmp_path / "last.ckpt"


WRITER = textwrap.dedent(
    """
    import sys, torch
    from mtp.models.checkpoint_writer import atomic_torch_save
    big = torch.arange(16_000_000, dtype=torch.float32)  # 64 MB
    i = 0
    while True:
        atomic_torch_save({"i": i, "big": big + i}, sys.argv[1])
        i += 1
    """
)


@pytest.mark.timeout(120)
def test_kill_9_while_writing_a_large_checkpoint_leaves_the_previous_one_and_an_orphan_cleaned_at_start_up(tmp_path):
    last = tmp_path / "last.ckpt"
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(last)], env=env)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            partial = [p for p in tmp_path.glob(f".last.ckpt.*{PARTIAL_SUFFIX}") if p.stat().st_size > 8_000_000]
            if last.exists() and partial:
                break
            time.sleep(0.002)
        else:
            pytest.fail("the writer never got to a second write")
        writer.send_signal(signal.SIGKILL)  # mid-write: the partial file is being filled
        writer.wait(30)
    finally:
        writer.kill()
    loaded = torch.load(last, weights_only=True)
    assert torch.equal(loaded["big"], torch.arange(16_000_000, dtype=torch.float32) + loaded["i"])
    orphans = list(tmp_path.glob(f".last.ckpt.*{PARTIAL_SUFFIX}"))
    assert len(orphans) == 1, "kill -9 cannot clean up: its partial file stays (hidden, under a temporary name)"
    assert remove_orphan_partial_files(tmp_path) == orphans
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_orphan_clean_up_spares_live_writers_and_other_files(tmp_path):
    mine = partial_file_name(tmp_path / "last.ckpt").name
    live = tmp_path / mine.replace(f"-{os.getpid()}.", f"-{os.getppid()}.")  # the parent process is alive
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / mine.replace(f"-{os.getpid()}.", f"-{finished.stdout.strip()}.")
    other = tmp_path / "notes.mtp-partial.txt"
    for path in (live, dead, other):
        path.write_bytes(b"x")
    assert remove_orphan_partial_files(tmp_path) == [dead]
    assert live.exists() and other.exists() and not dead.exists()
