"""Scene-classification readers: class order, layouts, seeded splits, GeoTIFF bands, split files, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

from mtp.data.datasets.classification import (
    RESISC45,
    RESISC45_CLASSES,
    ClassFolder,
    EuroSAT,
    UnlabelledImages,
    read_classification_image,
)
from mtp.data.synthetic import write_eurosat

SYNTHETIC = ["Agricultural", "Airport", "Forest", "Highway", "Industrial", "Residential", "Water"]


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eurosat_release")
    write_eurosat(root, layout="release", n_per_class=5, size=32, source_size=64, seed=1)
    return root


def save_rgb(path: Path, colour=(10, 20, 30), size=(8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_release_layout_sorted_classes_and_sample_dict(release):
    ds = EuroSAT(release, split="all", layout="release")
    assert ds.classes == sorted(SYNTHETIC) == SYNTHETIC and ds.num_classes == 7 and len(ds) == 35
    for path, label in ds.samples:
        assert path.parent.name == ds.classes[label]
    sample = ds[7]
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, 32, 32)
    assert sample["label"].dtype == torch.int64 and int(sample["label"]) == 1  # 5 per class: Airport
    assert sample["image_path"].endswith(".jpg")


def test_seeded_split_is_stratified_disjoint_and_reproducible(release):
    train = EuroSAT(release, split="train", layout="release", val_fraction=0.4, seed=3)
    val = EuroSAT(release, split="val", layout="release", val_fraction=0.4, seed=3)
    again = EuroSAT(release, split="val", layout="release", val_fraction=0.4, seed=3)
    other = EuroSAT(release, split="val", layout="release", val_fraction=0.4, seed=4)
    assert len(train) == 21 and len(val) == 14  # 3 + 2 per class
    assert np.bincount(val.targets).tolist() == [2] * 7
    assert not {p for p, _ in train.samples} & {p for p, _ in val.samples}
    assert val.samples == again.samples and val.samples != other.samples


def test_mtp_layout_and_explicit_class_order(tmp_path):
    write_eurosat(tmp_path, layout="mtp", n_per_class=4, size=32, source_size=64)
    train, val = EuroSAT(tmp_path, split="train"), EuroSAT(tmp_path, split="val")
    assert (len(train), len(val)) == (21, 7) and train.classes == val.classes == SYNTHETIC
    order = ["Water", "Forest"]
    sub = ClassFolder(tmp_path / "val", classes=order)
    assert sub.classes == order and sub.targets == [0, 1] and sub.samples[0][0].parent.name == "Water"
    with pytest.raises(ValueError, match="'mtp' has splits"):
        EuroSAT(tmp_path, split="all")


def test_bad_folders_and_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ClassFolder(tmp_path / "nowhere")
    save_rgb(tmp_path / "a" / "x.png")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("no image")
    with pytest.raises(ValueError, match=r"class folder .*b has no images"):
        ClassFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"class folder not found: .*zebra"):
        ClassFolder(tmp_path, classes=["a", "zebra"])
    (tmp_path / "b" / "broken.jpg").write_bytes(b"not a jpeg")
    ds = ClassFolder(tmp_path)
    with pytest.raises(ValueError, match=r"cannot read image .*broken\.jpg"):
        ds[1]


def write_sentinel2(path: Path, dn: list[int], bands: int = 13) -> None:
    """A (bands, 4, 4) uint16 GeoTIFF whose band b (1-based) holds dn[b - 1]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.stack([np.full((4, 4), dn[b], np.uint16) for b in range(bands)])
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=bands, dtype="uint16") as dst:
        dst.write(data)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_sentinel2_geotiff_is_read_as_b04_b03_b02_scaled(tmp_path):
    dn = [100 * (b + 1) for b in range(13)]
    dn[3], dn[2], dn[1] = 6000, 1500, 600  # B04 (clipped), B03, B02
    write_sentinel2(tmp_path / "SeaLake" / "SeaLake_1.tif", dn)
    rgb = np.asarray(read_classification_image(tmp_path / "SeaLake" / "SeaLake_1.tif"))
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [255, round(1500 / 3000 * 255), round(600 / 3000 * 255)]
    ds = EuroSAT(tmp_path, split="all", layout="release")
    assert ds[0]["image"][:, 0, 0].tolist() == [255, 128, 51]
    custom = np.asarray(read_classification_image(tmp_path / "SeaLake" / "SeaLake_1.tif", rgb_bands=(8, 8, 8)))
    assert custom[0, 0].tolist() == [round(800 / 3000 * 255)] * 3
    write_sentinel2(tmp_path / "two.tif", [1, 2], bands=2)
    with pytest.raises(ValueError, match=r"two\.tif.*2 band"):
        read_classification_image(tmp_path / "two.tif")


@pytest.fixture
def nwpu(tmp_path) -> Path:
    root = tmp_path / "all_img"
    for name in ("airport", "beach", "wetland"):
        for k in range(1, 4):
            save_rgb(root / name / f"{name}_{k:03d}.jpg")
    return root


def test_resisc45_split_file_with_indices_names_and_folders(nwpu, tmp_path):
    split = tmp_path / "train_labels.txt"
    split.write_text("# comment\nairport/airport_001.jpg 0\n\nbeach/beach_002.jpg beach\nwetland/wetland_003.jpg\n")
    ds = RESISC45(nwpu, split_file=split)
    assert ds.classes == ["airport", "beach", "wetland"]
    assert [(p.name, label) for p, label in ds.samples] == [
        ("airport_001.jpg", 0),
        ("beach_002.jpg", 1),
        ("wetland_003.jpg", 2),
    ]
    seeded = RESISC45(nwpu, split="train", train_fraction=0.34, seed=0)
    rest = RESISC45(nwpu, split="val", train_fraction=0.34, seed=0)
    assert len(seeded) == 3 and len(rest) == 6 and np.bincount(seeded.targets).tolist() == [1, 1, 1]
    assert len(RESISC45_CLASSES) == 45 and list(RESISC45_CLASSES) == sorted(RESISC45_CLASSES)


@pytest.mark.parametrize(
    ("line", "error", "match"),
    [
        ("airport/airport_001.jpg zebra", ValueError, r"split\.txt:2: unknown class 'zebra'"),
        ("airport/airport_001.jpg 3", ValueError, r"split\.txt:2: class index 3 outside 0\.\.2"),
        ("airport/airport_404.jpg 0", FileNotFoundError, r"split\.txt:2: image not found: .*airport_404"),
    ],
)
def test_resisc45_bad_split_lines_name_file_and_line(nwpu, tmp_path, line, error, match):
    split = tmp_path / "split.txt"
    split.write_text(f"beach/beach_001.jpg 1\n{line}\n")
    with pytest.raises(error, match=match):
        RESISC45(nwpu, split_file=split)


def test_unlabelled_images_for_predict(tmp_path):
    save_rgb(tmp_path / "b.png", size=(6, 5))
    save_rgb(tmp_path / "a.jpg")
    ds = UnlabelledImages(tmp_path)
    assert [Path(ds[i]["image_path"]).name for i in range(2)] == ["a.jpg", "b.png"]
    assert int(ds[1]["label"]) == -1 and ds[1]["image"].shape == (3, 5, 6) and ds.classes == []
    with pytest.raises(ValueError, match="no images"):
        UnlabelledImages(tmp_path / "..", extensions=(".webp",))
