"""The catalogue names every file of the official release, consistently with our configs, factory and docs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mtp.models import list_architectures
from mtp.weights import CATALOGUE, catalogue_markdown, get_weights, is_weights_name, list_weights
from mtp.weights.catalogue import LOADERS

REPO = Path(__file__).resolve().parents[2]
DATASETS = ("eurosat", "resisc45", "xview", "dior", "diorr", "fair1m20", "spacenetv1", "loveda", "oscd", "whu",
            "levir", "cdd")  # fmt: skip
BACKBONES = ("vit_b_rvsa", "vit_l_rvsa", "internimage_xl")


def _model_args(config: Path) -> dict:
    return yaml.safe_load(config.read_text())["model"]["init_args"]


def test_the_release_is_named_completely_and_consistently():
    # Pretrained: MAE (ViT-B from the RVSA release, ViT-L), ImageNet InternImage-XL, MTP encoder + whole model.
    pretrained = {f"{s}:{b}" for s in ("mtp", "mtp-whole") for b in BACKBONES} | {
        "mae:vit_b_rvsa", "mae:vit_l_rvsa", "imp:internimage_xl"}  # fmt: skip
    assert set(list_weights(kind="backbone")) | set(list_weights(kind="pretraining")) == pretrained
    # Fine-tuned: the README's 12 dataset rows x 3 backbones (MAE+MTP ViT-B/L, IMP+MTP InternImage-XL).
    finetuned = list_weights(kind="finetuned")
    assert len(finetuned) == 36 and {n.split(":")[0] for n in finetuned} == set(DATASETS)
    assert len(CATALOGUE) == 45 and len({w.relpath for w in CATALOGUE.values()}) == 45
    for name, w in CATALOGUE.items():
        assert is_weights_name(name) and get_weights(name) is w
        assert w.pages and all(url.startswith("https://") for _, url in w.pages) and w.where and w.keys
        assert name.split(":")[1].startswith(w.backbone) or name.split(":")[1].startswith(w.model or "~")
        if w.model is not None:
            assert w.architecture in list_architectures() and w.architecture in LOADERS
            assert w.model == f"{w.architecture}_{w.backbone}"
        if w.kind == "finetuned":
            assert name == f"{name.split(':')[0]}:{w.model}_{w.pretraining.lower().replace('+', '_')}"
            assert w.metric is not None and 10 < w.metric[1] < 100
            assert w.official_config.startswith("RS_Tasks_Finetune/") and w.subdir in w.official_config


def test_paper_metrics_are_the_readme_numbers():
    readme = {
        "eurosat:classifier_vit_l_rvsa_mae_mtp": 98.78, "resisc45:classifier_internimage_xl_imp_mtp": 96.27,
        "xview:retinanet_vit_l_rvsa_mae_mtp": 19.40, "dior:faster_rcnn_vit_b_rvsa_mae_mtp": 79.00,
        "diorr:oriented_rcnn_vit_l_rvsa_mae_mtp": 74.54, "fair1m20:oriented_rcnn_internimage_xl_imp_mtp": 50.93,
        "spacenetv1:upernet_vit_b_rvsa_mae_mtp": 79.63, "loveda:upernet_vit_l_rvsa_mae_mtp": 54.17,
        "oscd:changenet_vit_b_rvsa_mae_mtp": 53.36, "whu:changenet_internimage_xl_imp_mtp": 95.59,
        "levir:changenet_vit_l_rvsa_mae_mtp": 92.67, "cdd:changenet_vit_b_rvsa_mae_mtp": 97.87,
    }  # fmt: skip
    assert {name: CATALOGUE[name].metric[1] for name in readme} == readme


def test_config_twins_use_the_catalogue_names_and_match_the_entries():
    used = {}
    for config in sorted((REPO / "configs").rglob("*.yaml")):
        pretrained = _model_args(config).get("pretrained")
        if isinstance(pretrained, str) and is_weights_name(pretrained):
            used.setdefault(pretrained, set()).add(config.relative_to(REPO).as_posix())
    assert {"mae:vit_b_rvsa", "mae:vit_l_rvsa", "mtp:vit_b_rvsa", "mtp:vit_l_rvsa"} <= set(used) <= set(CATALOGUE)
    for name, configs in used.items():  # each backbone entry lists exactly the twins that use it
        assert configs == set(CATALOGUE[name].configs) or not CATALOGUE[name].configs, name
    for w in CATALOGUE.values():
        for config in w.configs:
            assert (REPO / config).is_file(), config
        if w.kind != "finetuned" or not w.configs:
            continue
        twin = REPO / w.configs[0]
        assert twin.read_text().splitlines()[0] == f"# Twin of {w.official_config}", twin
        args = _model_args(twin)
        assert args["pretrained"] == f"mtp:{w.backbone}" and args["backbone"] == w.backbone
        assert (args["num_classes"], args["img_size"]) == (w.create_kwargs["num_classes"], w.create_kwargs["img_size"])
        assert args["backbone_kwargs"]["drop_path_rate"] == w.create_kwargs["drop_path_rate"]


def test_docs_table_is_the_catalogue():
    docs = (REPO / "docs" / "CHECKPOINTS.md").read_text()
    assert catalogue_markdown() in docs, "regenerate the table: mtp weights list --markdown"


@pytest.mark.parametrize(
    "source,expected",
    [("mtp:vit_b_rvsa", True), ("loveda:upernet_vit_b_rvsa_mae_mtp", True), ("mtp:vit_b_rsva", True),
     ("checkpoints/last.pth", False), ("C:/weights/x.pth", False), ("http://host/x.pth", False),
     ("nosuchsource:vit_b_rvsa", False), (Path("mtp:vit_b_rvsa"), False), (None, False)],
)  # fmt: skip
def test_what_counts_as_a_catalogue_name(source, expected):
    assert is_weights_name(source) is expected


def test_an_existing_file_named_like_a_catalogue_name_stays_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("mtp:vit_b_rvsa").write_bytes(b"x")
    assert not is_weights_name("mtp:vit_b_rvsa")
