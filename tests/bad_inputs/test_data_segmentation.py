"""Bad segmentation data (LoveDA, SpaceNet v1, image/mask folders) as the user meets it: `mtp tool check-data`
lists every bad file at once, the datamodule's start-up check stops before training, and a bad sample met during a
run is skipped and counted instead of ending the run (docs/RELIABILITY.md, "Data")."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from PIL import Image

from mtp.data.datamodules import SegmentationDataModule
from mtp.data.datasets.checks import DataCheckError
from mtp.data.datasets.segmentation import ImageMaskFolder, LoveDA, SpaceNetV1
from mtp.data.synthetic import write_loveda
from tests.bad_inputs.conftest import assert_clear_error
from tests.bad_inputs.data_files import check_data, not_an_image, spec, truncate, write_config, zero_bytes

SEG = "mtp.data.datamodules.SegmentationDataModule"
LOVEDA = "mtp.data.datasets.segmentation.LoveDA"


@pytest.fixture
def loveda(tmp_path) -> Path:
    """LoveDA release layout: Train/{Urban: 0, 2, 4; Rural: 1, 3, 5}, Val/{Urban: 6, 8; Rural: 7}, 64 x 64."""
    root = tmp_path / "loveda"
    write_loveda(root, n_train=6, n_val=3, n_test=1, size=64, layout="release")
    return root


def _write_mask(path: Path, mask: np.ndarray) -> None:
    Image.fromarray(mask.astype(np.uint8)).save(path)


def break_loveda(root: Path) -> dict[str, Path]:
    """Five bad files, one of each kind; returns them by kind."""
    urban, rural = root / "Train" / "Urban", root / "Train" / "Rural"
    bad = {
        "truncated": truncate(urban / "images_png" / "0.png"),
        "empty": zero_bytes(rural / "images_png" / "1.png"),
        "html": not_an_image(root / "Val" / "Urban" / "images_png" / "6.png"),
        "small_mask": urban / "masks_png" / "2.png",
        "value_9": rural / "masks_png" / "3.png",
    }
    _write_mask(bad["small_mask"], np.ones((32, 32)))
    mask = np.array(Image.open(bad["value_9"]))
    mask[5, 5] = 9
    _write_mask(bad["value_9"], mask)
    return bad


def loveda_config(tmp_path: Path, root: Path, **datamodule) -> Path:
    data = spec(SEG, train=spec(LOVEDA, root=root, split="train", layout="release"),
                val=spec(LOVEDA, root=root, split="val", layout="release"), crop_size=[32, 32],
                **datamodule)  # fmt: skip
    return write_config(tmp_path / "config.yaml", data)


def test_check_data_lists_every_bad_loveda_file_at_once(tmp_path, loveda):
    bad = break_loveda(loveda)
    config = loveda_config(tmp_path, loveda)
    quick = assert_clear_error(check_data(config))
    assert "4 problem(s)" in quick and "value" not in quick  # quick: headers only; the mask values need --level full
    assert f"[train] {bad['truncated']}: truncated PNG (no IEND chunk at the end of the file)" in quick
    assert f"[train] {bad['empty']}: empty file (0 bytes)" in quick
    assert f"[val] {bad['html']}: cannot read image (not an image file Pillow or rasterio can read)" in quick
    assert f"[train] {bad['small_mask']}: mask is 32x32 (HxW) but its image " in quick and "is 64x64" in quick
    full = assert_clear_error(check_data(config, "--level", "full", "--workers", "1"))
    assert "5 problem(s)" in full
    assert f"{bad['value_9']}: mask has values [9] that are not labels (stored values must be 1..7 = the 7 classes, " \
           "0 and 255 = ignore (reduce_zero_label))" in full  # fmt: skip


def test_check_data_reports_datasets_that_cannot_be_built(tmp_path, loveda):
    (loveda / "Train" / "Urban" / "masks_png" / "4.png").unlink()  # an image without its mask
    (tmp_path / "empty").mkdir()
    data = spec(SEG, train=spec(LOVEDA, root=loveda, split="train", layout="release"),
                val=spec(LOVEDA, root=loveda, split="val", layout="mtp"),  # wrong layout option
                test=spec("mtp.data.datasets.segmentation.ImageMaskFolder", images_dir=tmp_path / "empty",
                          classes=["a", "b"]),  # an empty folder
                predict=spec(LOVEDA, root=tmp_path / "nowhere", split="test"))  # fmt: skip
    out = assert_clear_error(check_data(write_config(tmp_path / "c.yaml", data)))
    train_folder = loveda / "Train" / "Urban"
    assert (f"[train] cannot build the train dataset: 1 image(s) in {train_folder / 'images_png'} have no '*.png' "
            f"mask in {train_folder / 'masks_png'}, e.g. 4.png") in out  # fmt: skip
    assert f"[val] cannot build the val dataset: {loveda} holds the LoveDA 'release' layout" in out
    assert "set layout: release" in out
    empty = tmp_path / "empty"
    assert f"[test] cannot build the test dataset: no '*.png' images in {empty} (the folder is empty)" in out
    assert f"[predict] cannot build the predict dataset: image folder not found: {tmp_path / 'nowhere'}" in out


def test_check_data_passes_a_good_set_with_exit_code_0(tmp_path, loveda):
    result = check_data(loveda_config(tmp_path, loveda), "--level", "full")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: 9 item(s) in 2 dataset(s), no problem" in result.stdout


def test_spacenet_and_image_mask_folder_bad_files_through_the_api(tmp_path):
    for split in ("train", "val"):
        for i in range(3):
            Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(_mkdir(tmp_path / split / "images") / f"{i}.png")
            _write_mask(_mkdir(tmp_path / split / "labels") / f"{i}.png", np.eye(16) * (255 if i == 1 else 1))
    zero_bytes(tmp_path / "train" / "images" / "2.png")
    ds = SpaceNetV1(tmp_path, "train")
    with pytest.raises(ValueError, match=r"train/images/2\.png: empty file \(0 bytes\)"):
        ds.check_item(2, "quick")
    with pytest.raises(ValueError, match=r"labels/1\.png: mask holds 0/255 values and no 1s.*spacenet-to-masks"):
        ds.check_item(1, "full")
    rgb_mask = tmp_path / "val" / "labels" / "0.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(rgb_mask)
    folder = ImageMaskFolder(tmp_path / "val" / "images", tmp_path / "val" / "labels", classes=["a", "b"])
    with pytest.raises(ValueError, match=rf"{rgb_mask}: a label map must be single-channel .* got PIL mode RGB"):
        folder.check_item(0, "quick")


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_datamodule_check_stops_before_training_with_the_whole_list(loveda):
    bad = break_loveda(loveda)
    train = LoveDA(loveda, "train", layout="release")
    dm = SegmentationDataModule(train=train, val=LoveDA(loveda, "val", layout="release"), num_workers=0)
    assert dm.check == "quick"
    with pytest.raises(DataCheckError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert message.startswith("data check (quick) found 4 problem(s) in 6 train + 3 val item(s):")
    assert all(str(bad[k]) in message for k in ("truncated", "empty", "html", "small_mask"))
    assert "mtp tool check-data --config CONFIG.yaml" in message and "check: off" in message
    with pytest.raises(DataCheckError, match=r"(?s)4 problem\(s\) in 6 train.*masks_png/3\.png: mask has values \[9\]"):
        SegmentationDataModule(train=train, val=None, check="full", num_workers=0).setup("fit")
    SegmentationDataModule(train=train, check="off", num_workers=0).setup("fit")  # no scan at all


class _Mean(lightning.LightningModule):
    """A one-parameter model: enough for the fit loop to ask for every batch."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        return (batch["image"].mean() - self.w) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_bad_sample_during_fit_is_skipped_and_counted_not_fatal(loveda, caplog):
    mask = loveda / "Train" / "Rural" / "masks_png" / "3.png"
    values = np.array(Image.open(mask))
    values[0, 0] = 9  # what a quick start-up check cannot see
    _write_mask(mask, values)
    dm = SegmentationDataModule(train=LoveDA(loveda, "train", layout="release"), crop_size=(32, 32), batch_size=2,
                                num_workers=0, photometric=False)  # fmt: skip
    trainer = lightning.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="mtp.data.datamodules.bad_samples"):
        trainer.fit(_Mean(), datamodule=dm)
    assert trainer.global_step == 6  # 3 full batches per epoch: the bad sample was replaced, not dropped
    assert dm.num_skipped_samples == 2  # once per epoch
    assert list(dm.skipped_samples) == [f"{mask}: mask has values [9] that are not labels (stored values must be "
                                        "1..7 = the 7 classes, 0 and 255 = ignore (reduce_zero_label))"]  # fmt: skip
    assert caplog.text.count(f"bad sample skipped (on_bad_sample='skip'): {mask}") == 1  # logged once per file
    assert "2 sample(s) of 1 file(s) were skipped" in caplog.text


def test_on_bad_sample_raise_names_the_file(loveda):
    zero_bytes(loveda / "Train" / "Urban" / "images_png" / "4.png")
    dm = SegmentationDataModule(train=LoveDA(loveda, "train", layout="release"), crop_size=(32, 32), batch_size=6,
                                num_workers=0, on_bad_sample="raise", check="off")  # fmt: skip
    with pytest.raises(ValueError, match=r"Urban/images_png/4\.png: empty file \(0 bytes\)"):
        list(dm.train_dataloader())
    with pytest.raises(ValueError, match="on_bad_sample must be 'skip' or 'raise'"):
        SegmentationDataModule(on_bad_sample="ignore")


def test_a_last_training_batch_of_one_sample_is_dropped(loveda):
    train = LoveDA(loveda, "train", layout="release")  # 6 images
    sizes = [len(b["image_path"]) for b in SegmentationDataModule(train=train, batch_size=5, num_workers=0)
             .train_dataloader()]  # fmt: skip
    assert sizes == [5]  # 5 + 1: the single-sample batch would break BatchNorm (UperNet's pooled branch)
    sizes = [len(b["image_path"]) for b in SegmentationDataModule(train=train, batch_size=4, num_workers=0)
             .train_dataloader()]  # fmt: skip
    assert sizes == [4, 2]  # a last batch of two is kept
    one = LoveDA(loveda, "train", layout="release")
    one.files = one.files[:1]
    with pytest.raises(ValueError, match=r"train dataset has 1 sample\(s\) .* fewer than batch_size=2"):
        SegmentationDataModule(train=one, batch_size=2).train_dataloader()
