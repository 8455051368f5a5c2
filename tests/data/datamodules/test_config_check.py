"""Building and checking the `data:` section of a config (mtp.data.datamodules.config_check), in process."""

from __future__ import annotations

import pytest

from mtp.data.datamodules.config_check import build_datamodule_datasets, check_data_section
from mtp.data.synthetic import write_loveda


@pytest.fixture(scope="module")
def loveda(tmp_path_factory):
    root = tmp_path_factory.mktemp("loveda")
    write_loveda(root, n_train=3, n_val=2, n_test=1, size=32)
    return root


def section(root, **extra) -> dict:
    loveda = {"class_path": "mtp.data.datasets.segmentation.LoveDA", "init_args": {"root": str(root)}}
    return {"class_path": "mtp.data.datamodules.SegmentationDataModule",
            "init_args": {"train": loveda, "test": {**loveda, "init_args": {"root": str(root), "split": "test"}},
                          "crop_size": [16, 16], **extra}}  # fmt: skip


def test_a_good_section_builds_the_datamodules_datasets_and_scans_them(loveda):
    datasets, problems = build_datamodule_datasets(section(loveda))
    assert problems == [] and sorted(datasets) == ["test", "train"] and len(datasets["train"]) == 5
    assert datasets["train"].transform is not None  # the datamodule's copies, as `mtp fit` would use them
    result = check_data_section(section(loveda), "full", workers=1)
    assert result.problems == [] and [r.num_items for r in result.reports] == [5, 1]


def test_build_problems_of_datasets_and_datamodule_options(loveda, tmp_path):
    broken = section(loveda)
    broken["init_args"]["test"]["init_args"]["root"] = str(tmp_path / "nowhere")
    datasets, problems = build_datamodule_datasets(broken)
    assert list(datasets) == ["train"]  # still scanned
    assert [p.dataset for p in problems] == ["test"] and "image folder not found" in problems[0].message
    _, problems = build_datamodule_datasets(section(loveda, batch_size="many"))
    assert problems[0].dataset == "data" and "batch_size" in problems[0].message
    _, problems = build_datamodule_datasets({"class_path": "mtp.data.datamodules.NoSuchModule"})
    assert "cannot import 'mtp.data.datamodules.NoSuchModule'" in problems[0].message
