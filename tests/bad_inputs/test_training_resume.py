"""``kill -9`` right after a checkpoint and Ctrl-C during ``mtp fit``: the run resumes with ``--ckpt_path`` at the
right global step, with exactly the optimizer / scheduler state and weights that were saved.

Real ``mtp fit`` processes on configs/segmentation/tiny-loveda-cpu.yaml (synthetic LoveDA); the faults are raised
from inside the process by the callbacks of tests/bad_inputs/training_helpers.py; the resumed runs go through the
same CLI code in this process (``mtp.cli.main``).
"""

from __future__ import annotations

import signal

import pytest
import torch

from mtp.cli import main
from mtp.data.synthetic import write_loveda
from tests.bad_inputs.conftest import run_mtp
from tests.bad_inputs.training_helpers import assert_same_tensors, tiny_loveda_config

HELPERS = "tests.bad_inputs.training_helpers"


@pytest.fixture(scope="module")
def loveda(tmp_path_factory):
    root = tmp_path_factory.mktemp("loveda")
    write_loveda(root, layout="release", n_train=8, n_val=2, n_test=1, size=128, seed=5)
    return root


def _record(out) -> dict:
    return {"class_path": f"{HELPERS}.RecordRunStart", "init_args": {"out": str(out)}}


def _assert_resumed_from(record_file, ckpt_file, step: int) -> None:
    record = torch.load(record_file, weights_only=True)
    saved = torch.load(ckpt_file, weights_only=True)
    assert saved["global_step"] == record["global_step"] == step
    assert record["checkpoint_io"] == "SafeCheckpointIO"
    assert_same_tensors(record["optimizer"]["state"], saved["optimizer_states"][0]["state"], "optimizer.state")
    for mine, theirs in zip(record["optimizer"]["param_groups"], saved["optimizer_states"][0]["param_groups"],
                            strict=True):  # fmt: skip
        assert mine["lr"] == theirs["lr"] and mine["params"] == theirs["params"]
    assert record["scheduler"]["last_epoch"] == saved["lr_schedulers"][0]["last_epoch"] == step
    assert_same_tensors(record["state_dict"], saved["state_dict"], "state_dict")


@pytest.mark.timeout(300)
def test_kill_9_right_after_a_checkpoint_then_resume_continues_at_that_step(loveda, tmp_path):
    work = tmp_path / "work"
    kill = {"class_path": f"{HELPERS}.KillAtStep", "init_args": {"step": 4}}
    config = tiny_loveda_config(tmp_path / "kill.yaml", loveda, work, callbacks=[kill])
    killed = run_mtp("fit", "--config", config, "--trainer.max_steps", "10")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    last = work / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4
    assert not list((work / "checkpoints").glob(".*")), "partial files left under the checkpoint folder"

    config = tiny_loveda_config(tmp_path / "resume.yaml", loveda, work, callbacks=[_record(tmp_path / "start.pt")])
    assert main(["fit", "--config", str(config), "--trainer.max_steps", "6", "--ckpt_path", str(last)]) == 0
    _assert_resumed_from(tmp_path / "start.pt", work / "checkpoints" / "epoch=0-step=4.ckpt", step=4)
    assert torch.load(last, weights_only=True)["global_step"] == 6


@pytest.mark.timeout(300)
def test_ctrl_c_finishes_the_step_writes_last_ckpt_and_exits_130_then_resumes(loveda, tmp_path):
    work = tmp_path / "work"
    ctrl_c = {"class_path": f"{HELPERS}.SignalAtStep", "init_args": {"step": 3}}
    config = tiny_loveda_config(tmp_path / "int.yaml", loveda, work, callbacks=[ctrl_c], every_n_train_steps=100)
    interrupted = run_mtp("fit", "--config", config, "--trainer.max_steps", "10")
    out = interrupted.stdout + interrupted.stderr
    assert interrupted.returncode == 130, out[-3000:]
    last = work / "checkpoints" / "last.ckpt"
    assert "interrupted; last.ckpt written at global step 3" in out and f"--ckpt_path {last}" in out
    assert "Traceback" not in out
    assert torch.load(last, weights_only=True)["global_step"] == 3
    snapshot = torch.load(last, weights_only=True)

    config = tiny_loveda_config(
        tmp_path / "resume.yaml", loveda, work, callbacks=[_record(tmp_path / "start.pt")], every_n_train_steps=100
    )
    assert main(["fit", "--config", str(config), "--trainer.max_steps", "4", "--ckpt_path", str(last)]) == 0
    torch.save(snapshot, tmp_path / "snapshot.ckpt")
    _assert_resumed_from(tmp_path / "start.pt", tmp_path / "snapshot.ckpt", step=3)
