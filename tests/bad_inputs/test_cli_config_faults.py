"""Config faults: a misspelled key (named, with the close match), a missing config file, an output / checkpoint
folder that cannot be written (found at start-up, before any training), ``max_steps 0`` (says what would happen),
and a test set whose pixels are all ignored (the reason in the log and in metrics.json instead of bare NaNs)."""

from __future__ import annotations

import json

import pytest
import yaml

from mtp.data.synthetic import write_loveda
from tests.bad_inputs.conftest import assert_clear_error, run_mtp
from tests.bad_inputs.training_helpers import run_in_process, tiny_loveda_config


@pytest.fixture(scope="module")
def loveda(tmp_path_factory):
    root = tmp_path_factory.mktemp("loveda")
    write_loveda(root, layout="release", n_train=2, n_val=2, n_test=1, size=128, seed=3)
    return root


def test_misspelled_model_key_names_it_and_suggests_the_close_match(loveda, tmp_path):
    config = tiny_loveda_config(tmp_path / "c.yaml", loveda, tmp_path / "work")
    text = config.read_text().replace("warmup_iters:", "warmup_iter:")
    assert "warmup_iter:" in text
    config.write_text(text)
    result = run_mtp("fit", "--config", config, timeout=120)
    out = assert_clear_error(result, "mtp fit: error: model (mtp.tasks.segmentation.SemanticSegmentationTask): "
                             "unknown option 'warmup_iter' (did you mean 'warmup_iters'", max_lines=4)  # fmt: skip
    assert result.returncode == 2 and "usage:" not in out


def test_misspelled_trainer_key_and_missing_config_file(loveda, tmp_path, capsys):
    config = tiny_loveda_config(tmp_path / "c.yaml", loveda, tmp_path / "work")
    loaded = yaml.safe_load(config.read_text())
    loaded["trainer"]["max_step"] = loaded["trainer"].pop("max_steps")
    config.write_text(yaml.safe_dump(loaded))
    code, out = run_in_process(capsys, "fit", "--config", config)
    assert code == 2 and "unknown option 'trainer.max_step' (did you mean 'max_steps'" in out, out[-2000:]
    code, out = run_in_process(capsys, "fit", "--config", tmp_path / "nope.yaml")
    assert code == 2 and f"config file not found: '{tmp_path / 'nope.yaml'}'" in out, out[-2000:]
    assert "usage:" not in out


@pytest.mark.parametrize("option", ["--trainer.default_root_dir", "--trainer.callbacks.init_args.dirpath",
                                    "--model.output_dir"])  # fmt: skip
def test_unwritable_output_folder_is_found_before_training(loveda, tmp_path, capsys, option):
    config = tiny_loveda_config(tmp_path / "c.yaml", loveda, tmp_path / "work")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")  # a folder cannot be created below a file (also for root, unlike chmod)
    code, out = run_in_process(capsys, "fit", "--config", config, option, blocker / "out")
    assert code == 2, out[-2000:]
    assert f"cannot write to {blocker / 'out'}" in out and "nothing was run" in out
    assert "Epoch" not in out and not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize("limit", ["max_steps", "max_epochs"])
def test_zero_steps_or_epochs_says_what_would_happen(loveda, tmp_path, capsys, limit):
    config = tiny_loveda_config(tmp_path / "c.yaml", loveda, tmp_path / "work")
    code, out = run_in_process(capsys, "fit", "--config", config, f"--trainer.{limit}", "0")
    assert code == 2 and f"trainer.{limit} is 0: fit would stop before the first training step" in out, out
    assert "set max_iters" not in out


def test_test_set_with_every_pixel_ignored_reports_why(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    root = tmp_path / "loveda"
    write_loveda(root, layout="release", n_train=2, n_val=2, n_test=1, size=128, seed=3)
    for mask in (root / "Val").rglob("masks_png/*.png"):  # raw 0 = no-data -> 255 (ignored) everywhere
        Image.fromarray(np.zeros((128, 128), np.uint8)).save(mask)
    config = tiny_loveda_config(tmp_path / "c.yaml", root, tmp_path / "work")
    code, out = run_in_process(capsys, "test", "--config", config)
    assert code == 0, out[-3000:]
    metrics = json.loads((tmp_path / "work" / "test" / "metrics.json").read_text())
    assert metrics["mIoU"] is None and metrics["aAcc"] is None
    assert "every pixel of the test set is ignore_index 255" in metrics["note"]
    assert "every pixel of the test set is ignore_index 255" in out
    assert "note: no metric" in (tmp_path / "work" / "test" / "per_class.txt").read_text()
