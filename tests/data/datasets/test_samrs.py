"""SAMRSDataset on synthetic SOTA / SIOR / FAST in the official layouts: classes, the +1 semantic shift, targets as
written, annotation filtering, and the start-up consistency check reporting every mismatch at once."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from mtp.data.datasets.rotated_formats import parse_dior_xml, parse_dota_txt
from mtp.data.datasets.samrs import (
    FAST_CLASSES,
    SAMRS_LAYOUTS,
    SIOR_CLASSES,
    SOTA_CLASSES,
    SAMRSConsistencyError,
    SAMRSDataset,
)
from mtp.data.synthetic import classes as synthetic_classes
from mtp.data.synthetic import write_samrs
from mtp.ops.rotated.boxes import poly2rbox

VARIANTS = ("sota", "sior", "fast")


@pytest.fixture(scope="module")
def samrs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("samrs")
    for v in VARIANTS:
        write_samrs(root, variant=v, seed=3, n_train=4, n_val=2, size=128)
    return root


def _copy(samrs_root, tmp_path, variant="fast"):
    base = SAMRS_LAYOUTS[variant].base
    shutil.copytree(samrs_root / base, tmp_path / base)
    return tmp_path


def test_class_lists_match_the_synthetic_writer():
    assert (len(SOTA_CLASSES), len(SIOR_CLASSES), len(FAST_CLASSES)) == (18, 20, 37)
    assert SOTA_CLASSES == synthetic_classes.SOTA_CLASSES
    assert SIOR_CLASSES == synthetic_classes.SIOR_CLASSES
    assert FAST_CLASSES == synthetic_classes.FAST_CLASSES


@pytest.mark.parametrize("variant", VARIANTS)
def test_reads_official_layout(samrs_root, variant):
    layout = SAMRS_LAYOUTS[variant]
    train, valid = SAMRSDataset(samrs_root, variant, "train"), SAMRSDataset(samrs_root, variant, "valid")
    assert (len(train), len(valid)) == (4, 2)
    assert train.classes == layout.classes and train.semantic_classes == ("background", *layout.classes)
    data = json.loads(layout.json_path(samrs_root, "train").read_text())
    n_objects = 0
    for i in range(len(train)):
        s = train[i]
        h, w = s["ori_hw"]
        assert s["image"].shape == (3, h, w) and s["image"].dtype == torch.uint8
        gray = cv2.imread(str(train.record(i).gray_path), cv2.IMREAD_UNCHANGED)
        shifted = torch.from_numpy(((gray.astype(np.int64) + 1) % 256).astype(np.uint8))
        assert torch.equal(s["semantic"].as_subclass(torch.Tensor), shifted)  # 255 -> 0, k -> k + 1
        assert int(s["semantic"].max()) <= len(layout.classes)
        anns = [a for a in data.get("annotations", []) if a["image_id"] == s["image_id"]]
        assert s["labels"].tolist() == [a["category_id"] for a in anns]
        expected = [[x, y, x + bw, y + bh] for x, y, bw, bh in (a["bbox"] for a in anns)]
        torch.testing.assert_close(s["boxes"].as_subclass(torch.Tensor), torch.tensor(expected).reshape(-1, 4))
        masks = s["masks"].as_subclass(torch.Tensor)
        assert masks.shape == (len(anns), h, w) and masks.dtype == torch.uint8
        assert masks.sum((1, 2)).tolist() == [int(a["area"]) for a in anns]
        parser = parse_dior_xml if variant == "sior" else parse_dota_txt
        ann = parser(train.record(i).box_path)
        assert s["rlabels"].tolist() == [layout.classes.index(n) for n in ann.names]
        torch.testing.assert_close(s["rboxes"], poly2rbox(torch.from_numpy(ann.polys).double()).float())
        n_objects += len(anns)
    assert n_objects > 0 and train.label_counts().sum() == n_objects


def test_lazy_masks_and_resampling(samrs_root):
    calls = []

    def reject_first(sample):
        calls.append(sample["image_id"])
        return None if len(calls) == 1 else sample

    ds = SAMRSDataset(samrs_root, "fast", "train", reject_first, lazy_masks=True)
    torch.manual_seed(0)
    s = ds[0]
    assert "rles" in s and "masks" not in s and len(calls) == 2 and calls[0] == ds.record(0).image_id
    never = SAMRSDataset(samrs_root, "fast", "train", lambda s: None, max_resample=3)
    with pytest.raises(RuntimeError, match="rejected 4 samples"):
        never[0]


def test_annotation_filter_counts(samrs_root, tmp_path):
    root = _copy(samrs_root, tmp_path)
    path = SAMRS_LAYOUTS["fast"].json_path(root, "train")
    data = json.loads(path.read_text())
    data["categories"].append({"id": 99, "name": "not-a-fast-class"})
    base = dict(data["annotations"][0])
    extra = [
        {**base, "id": 1000, "iscrowd": 1},
        {**base, "id": 1001, "ignore": 1},
        {**base, "id": 1002, "bbox": [1.0, 1.0, 0.5, 4.0]},
        {**base, "id": 1003, "area": 0},
        {**base, "id": 1004, "category_id": 99},
        {**base, "id": 1005, "bbox": [500.0, 500.0, 4.0, 4.0]},
    ]
    data["annotations"] += extra
    path.write_text(json.dumps(data))
    dirty, clean = SAMRSDataset(root, "fast", "train"), SAMRSDataset(samrs_root, "fast", "train")
    assert dirty.num_skipped == {"ignore": 1, "outside": 1, "small": 2, "unknown_category": 1, "crowd": 1}
    assert dirty.label_counts().tolist() == clean.label_counts().tolist()


def test_degenerate_quads_skipped(samrs_root, tmp_path):
    root = _copy(samrs_root, tmp_path)
    ds = SAMRSDataset(root, "fast", "train")
    box = ds.record(0).box_path
    box.write_text(box.read_text() + "5 5 5 5 9 9 1 9 Small-Car 0\n")
    again = SAMRSDataset(root, "fast", "train")
    assert again.num_degenerate == 1 and len(again[0]["rboxes"]) == len(ds[0]["rboxes"])


def test_consistency_check_lists_every_mismatch(samrs_root, tmp_path):
    root = _copy(samrs_root, tmp_path)
    base = root / SAMRS_LAYOUTS["fast"].base
    path = SAMRS_LAYOUTS["fast"].json_path(root, "train")
    data = json.loads(path.read_text())
    (base / "rhbox_segs_init/gray/0.png").unlink()  # image 0: gray map missing
    (base / "rbbtxts/1.txt").unlink()  # image 1: box file missing
    cv2.imwrite(str(base / "rhbox_segs_init/gray/2.png"), np.full((64, 64), 255, np.uint8))  # wrong size
    gray3 = cv2.imread(str(base / "rhbox_segs_init/gray/3.png"), cv2.IMREAD_UNCHANGED)
    gray3[0, :3] = (37, 40, 200)  # values outside 0..36, 255
    cv2.imwrite(str(base / "rhbox_segs_init/gray/3.png"), gray3)
    data["images"].append({"id": 77, "file_name": "nope.png", "height": 128, "width": 128})  # image missing
    data["annotations"].append({**data["annotations"][0], "id": 900, "category_id": 55})  # category out of range
    data["annotations"].append({**data["annotations"][0], "id": 901, "image_id": 12345})
    path.write_text(json.dumps(data))
    with open(base / "rbbtxts/3.txt", "a") as f:
        f.write("1 1 9 1 9 9 1 9 Spaceship 0\n")
    with pytest.raises(SAMRSConsistencyError) as err:
        SAMRSDataset(root, "fast", "train", check="full")
    msg = str(err.value)
    for expected in ("gray map missing: 2", "0.png (for 0.png)", "box file missing: 2", "1.txt", "nope.txt",
                     "image missing: 1", "nope.png", "gray-map size != json size: 1", "2.png (64x64 vs 128x128)",
                     "gray values out of range", "3.png [37, 40, 200]", "category id out of range",
                     "annotation of an unknown image_id", "unknown rotated-box class", "Spaceship"):  # fmt: skip
        assert expected in msg, (expected, msg)
    assert msg.count("\n  - ") == 8  # one line per kind of mismatch, in one error
    # cheaper levels skip the value scan but still catch the rest
    with pytest.raises(SAMRSConsistencyError) as err:
        SAMRSDataset(root, "fast", "train", check="headers")
    assert "gray values" not in str(err.value) and "gray-map size" in str(err.value)


def test_bad_arguments(samrs_root, tmp_path):
    with pytest.raises(ValueError, match="variant"):
        SAMRSDataset(samrs_root, "dota", "train")
    with pytest.raises(ValueError, match="split"):
        SAMRSDataset(samrs_root, "sota", "test")
    with pytest.raises(FileNotFoundError, match="SAMRS sota base"):
        SAMRSDataset(tmp_path, "sota", "train")


def test_rle_column_decoder_matches_pycocotools():
    from pycocotools import mask as mask_utils

    from mtp.data.datasets.samrs_storage import decode_rle_columns, rle_counts

    rng = np.random.default_rng(0)
    for t in range(200):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8) * (t % 4 != 0)
        coded = mask_utils.encode(np.asfortranarray(m))
        seg = {"size": [h, w], "counts": coded["counts"].decode()}
        c0 = int(rng.integers(0, w))
        c1 = int(rng.integers(c0 + 1, w + 1))
        assert np.array_equal(decode_rle_columns(seg, c0, c1), m[:, c0:c1])
        plain = {"size": [h, w], "counts": rle_counts(seg).tolist()}  # uncompressed form
        assert np.array_equal(decode_rle_columns(plain, 0, w), m)


def test_compact_store_and_uncompressed_rles(samrs_root, tmp_path):
    from mtp.data.datasets.samrs_storage import rle_counts

    root = _copy(samrs_root, tmp_path, "sior")
    path = SAMRS_LAYOUTS["sior"].json_path(root, "train")
    data = json.loads(path.read_text())
    for ann in data["annotations"]:  # the uncompressed form ("counts" as a list of run lengths)
        ann["segmentation"]["counts"] = rle_counts(ann["segmentation"]).tolist()
    path.write_text(json.dumps(data))
    plain, ref = SAMRSDataset(root, "sior", "train"), SAMRSDataset(samrs_root, "sior", "train")
    st = plain.store
    assert st.rle_bytes.dtype == np.uint8 and st.rle_start.shape == (len(st.labels) + 1,)
    assert st.inst_start.shape == (len(plain) + 1,) and st.rboxes.shape == (len(st.rlabels), 5)
    for i in range(len(plain)):
        assert torch.equal(plain[i]["masks"], ref[i]["masks"])
        assert plain.record(i).rles == ref.record(i).rles  # stored compressed either way
