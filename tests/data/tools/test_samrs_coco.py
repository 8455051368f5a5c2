"""samrs-to-coco: pickles made from a synthetic SAMRS set convert back to its COCO json (the official converter's
fields, ids and names); the dataset reads the result; unsafe or malformed pickles fail naming the file."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from mtp.cli import main
from mtp.data.datasets.samrs import SAMRS_LAYOUTS, SAMRSDataset
from mtp.data.synthetic import write_samrs
from mtp.data.tools.samrs_coco import load_instance_pickle, samrs_split_to_coco, samrs_to_coco


@pytest.fixture(scope="module")
def sior(tmp_path_factory):
    """A synthetic SIOR set plus, from its jsons, the official converter inputs: split lists and one pickle per
    image with {label (numpy int), mask (RLE with bytes counts)}."""
    root = tmp_path_factory.mktemp("samrs_pkl")
    write_samrs(root, variant="sior", seed=2, n_train=3, n_val=2, size=96)
    layout = SAMRS_LAYOUTS["sior"]
    base = root / layout.base
    pkl_dir = base / "hbox_segs_trainvaltest_init" / "ins"
    pkl_dir.mkdir(parents=True)
    jsons = {}
    for split in ("train", "valid"):
        data = json.loads(layout.json_path(root, split).read_text())
        jsons[split] = data
        stems = [img["file_name"][:-4] for img in data["images"]]
        (base / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
        for img, stem in zip(data["images"], stems, strict=True):
            anns = [a for a in data.get("annotations", []) if a["image_id"] == img["id"]]
            insts = [{"label": np.int64(a["category_id"]),
                      "mask": {"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()}}
                     for a in anns]  # fmt: skip
            (pkl_dir / f"{stem}.pkl").write_bytes(pickle.dumps(insts))
    return root, base, pkl_dir, jsons


def test_matches_the_official_layout(sior):
    _, base, pkl_dir, jsons = sior
    for split, expected in jsons.items():
        got = samrs_split_to_coco(base, base / "JPEGImages-trainval", pkl_dir, "sior", split)
        assert got["categories"] == expected["categories"] and len(got["categories"]) == 20
        offset = expected["images"][0]["id"]  # the synthetic writer numbers images over both splits
        for g, e in zip(got["images"], expected["images"], strict=True):
            assert g == {**e, "id": e["id"] - offset}
        first_ann = expected["annotations"][0]["id"]
        assert len(got["annotations"]) == len(expected["annotations"]) > 0
        for k, (g, e) in enumerate(zip(got["annotations"], expected["annotations"], strict=True)):
            assert g["id"] == k == e["id"] - first_ann and g["image_id"] == e["image_id"] - offset
            assert (g["category_id"], g["iscrowd"], g["segmentation"]) == (e["category_id"], 0, e["segmentation"])
            assert g["bbox"] == pytest.approx(e["bbox"]) and g["area"] == e["area"]


def test_cli_output_is_read_by_the_dataset(sior, tmp_path):
    root, base, pkl_dir, jsons = sior
    for name in ("train", "valid"):
        os.replace(SAMRS_LAYOUTS["sior"].json_path(root, name), tmp_path / f"orig_{name}.json")
    try:
        args = ["--dataset", "sior", "--lists", str(base), "--images", str(base / "JPEGImages-trainval"),
                "--pickles", str(pkl_dir), "--out", str(base)]  # fmt: skip
        assert main(["tool", "samrs-to-coco", *args]) == 0
        ds = SAMRSDataset(root, "sior", "valid")
        assert len(ds) == 2 and ds.label_counts().sum() == sum(1 for _ in jsons["valid"]["annotations"])
    finally:
        for name in ("train", "valid"):
            os.replace(tmp_path / f"orig_{name}.json", SAMRS_LAYOUTS["sior"].json_path(root, name))


def test_empty_split_drops_annotations(sior, tmp_path):
    base = sior[1]
    (tmp_path / "train.txt").write_text((base / "train.txt").read_text())
    empty = tmp_path / "pkl"
    empty.mkdir()
    for stem in (base / "train.txt").read_text().split():
        (empty / f"{stem}.pkl").write_bytes(pickle.dumps([]))
    summary = samrs_to_coco(tmp_path, base / "JPEGImages-trainval", empty, tmp_path / "out", "sior", splits=["train"])
    data = json.loads((tmp_path / "out" / "sior_train_ins_segmentation.json").read_text())
    assert "annotations" not in data and len(data["images"]) == 3 and summary["train"]["annotations"] == 0


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (_Evil(), r"refusing to load the global .*system"),
        ({"label": 1}, "expected a list"),
        ([{"label": 1}], "'label' and 'mask'"),
        ([{"label": 25, "mask": {"size": [96, 96], "counts": b"x"}}], "label 25 out of range 0..19"),
        ([{"label": 1, "mask": {"size": [64, 96], "counts": b"x"}}], r"mask size \[64, 96\] differs"),
        ([{"label": "plane", "mask": {"size": [96, 96], "counts": b"x"}}], "label must be an integer"),
    ],
)
def test_bad_pickles_name_the_file(tmp_path, payload, match):
    path = tmp_path / "00042.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ValueError, match=match) as err:
        load_instance_pickle(path, 20, (96, 96))
    assert "00042.pkl" in str(err.value)
    path.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"cannot unpickle .*00042\.pkl"):
        load_instance_pickle(path, 20)


def test_missing_inputs(sior, tmp_path):
    _, base, pkl_dir, _ = sior
    with pytest.raises(FileNotFoundError, match="split list not found"):
        samrs_split_to_coco(tmp_path, base / "JPEGImages-trainval", pkl_dir, "sior", "train")
    (tmp_path / "train.txt").write_text("99999\n")
    with pytest.raises(FileNotFoundError, match="99999"):
        samrs_split_to_coco(tmp_path, base / "JPEGImages-trainval", pkl_dir, "sior", "train")
    with pytest.raises(ValueError, match="dataset must be one of"):
        samrs_to_coco(tmp_path, tmp_path, tmp_path, tmp_path, "dota")
