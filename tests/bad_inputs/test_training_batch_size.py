"""UperNet with one image per device and no SyncBN across devices (the official segmentation twins run as given on
one GPU: 8 GPUs x 1 image is the official recipe) stops at start-up with what to do, instead of failing at the
first step with torch's ``Expected more than 1 value per channel when training, got input size [1, 512, 1, 1]``.
The full-size twin is run in tests/test_official_twins_slow.py."""

from __future__ import annotations

from mtp.data.synthetic import write_loveda
from tests.bad_inputs.training_helpers import run_in_process, tiny_loveda_config


def test_batch_one_on_one_device_says_what_to_do_before_training(tmp_path, capsys):
    root = tmp_path / "loveda"
    write_loveda(root, layout="release", n_train=2, n_val=2, n_test=1, size=128)
    config = tiny_loveda_config(tmp_path / "c.yaml", root, tmp_path / "work")
    code, out = run_in_process(capsys, "fit", "--config", config, "--data.batch_size", "1")
    assert code == 2, out[-3000:]
    assert "data.batch_size is 1 on 1 device(s) without SyncBN" in out
    assert "--data.batch_size 8 (the official effective batch)" in out
    assert "--data.batch_size 2 --trainer.accumulate_grad_batches 4" in out
    assert "Expected more than 1 value per channel" not in out and "Traceback" not in out
    assert not list(tmp_path.rglob("*.ckpt"))
