"""The YAML twins of the official InternImage-XL configs: one per official run, the official hyperparameters, and
models that build at official size (meta device) with the key layout of the official InternImage-XL files."""

from __future__ import annotations

import pytest
import yaml

from mtp.cli import main
from mtp.weights import CATALOGUE
from tests.conftest import REPO
from tests.tasks.internimage import (
    OFFICIAL_CONFIGS,
    WITH_CP,
    build_on_meta,
    model_args,
    official_xl_layout,
    our_layout_in_official_names,
    twin_official,
    twins,
)

FAMILY_ARCH = {"segmentation": "upernet", "classification": "classifier", "change_detection": "changenet",
               "rotated_detection": "oriented_rcnn", "pretraining": "mtp"}  # fmt: skip


def _arch(config) -> str:
    family = config.parent.name
    if family == "detection":
        return "faster_rcnn" if config.stem.startswith("faster") else "retinanet"
    return FAMILY_ARCH[family]


def test_every_official_internimage_config_has_one_twin():
    assert len(OFFICIAL_CONFIGS) == 32 and len(twins()) == 29  # 28 fine-tuning runs (+ 4 MMRotate 0.3.4 copies) + MTP
    cited, copies = [], []
    for config in twins():
        first, other = twin_official(config)
        cited.append(first)
        copies += other
    fine_tuning = [c for c in cited if c.startswith("RS_Tasks_Finetune/")]
    assert sorted(fine_tuning) == sorted(c for c in OFFICIAL_CONFIGS if "mmrotate0.3.4" not in c)
    assert sorted(copies) == sorted(c for c in OFFICIAL_CONFIGS if "mmrotate0.3.4" in c)
    assert len(cited) - len(fine_tuning) == 1  # the pretraining run (Multi-Task_Pretrain/main_pretrain.py)


def test_twins_parse_with_the_official_hyperparameters(capsys):
    for config in twins():
        with pytest.raises(SystemExit) as exit_:
            main(["fit", "--config", str(config), "--print_config"])
        assert exit_.value.code == 0, config
        printed = capsys.readouterr().out
        family, name = config.parent.name, config.stem
        assert "backbone: internimage_xl" in printed and "drop_path_rate: 0.2" in printed, name
        cp = WITH_CP[family] if family != "detection" else WITH_CP[f"detection/{name.split('-')[0]}"]
        assert f"use_checkpoint: {str(cp).lower()}" in printed, name
        if family == "pretraining":  # the official InternImage pretraining applies its layer decay ('encoder.')
            assert "lr: 2.0e-05" in printed and "layer_decay: 0.94" in printed and "imp:internimage_xl\n" in printed
            continue
        lr = "0.0001" if family in ("detection", "rotated_detection") else "2.0e-05"
        assert f"lr: {lr}" in printed and "layer_decay: null" in printed and "weight_decay: 0.05" in printed, name
        route = "mtp" if "imp-mtp" in name else "imp"
        assert f"pretrained: {route}:internimage_xl\n" in printed, name
        header = config.read_text()
        assert "layer_decay null reproduces it" in header and "--model.layer_decay 0.94" in header, name


@pytest.mark.parametrize("config", twins(), ids=lambda p: p.stem)
def test_twin_builds_at_official_size_with_the_official_keys(config):
    arch = _arch(config)
    _, args = model_args(config)
    num_classes = args.get("num_classes", 2)
    model = build_on_meta(config)
    ours = our_layout_in_official_names(arch, model)
    official = official_xl_layout(arch, num_classes)
    assert ours.keys() == official.keys(), sorted(set(ours) ^ set(official))[:8]
    wrong = {k: (ours[k], official[k]) for k in official if ours[k] != official[k]}
    assert not wrong, list(wrong.items())[:8]


def test_catalogue_entries_list_the_twins():
    """The release files name the twin that produced / consumes them (mtp weights info)."""
    used: dict[str, set[str]] = {}
    for config in twins():
        pretrained = yaml.safe_load(config.read_text())["model"]["init_args"]["pretrained"]
        used.setdefault(pretrained, set()).add(f"configs/{config.parent.name}/{config.name}")
    assert set(CATALOGUE["imp:internimage_xl"].configs) == used["imp:internimage_xl"]
    assert set(CATALOGUE["mtp:internimage_xl"].configs) == used["mtp:internimage_xl"]
    assert CATALOGUE["mtp-whole:internimage_xl"].configs == (
        "configs/pretraining/internimage-xl-448-imp-samrs-mtp-three.yaml",
    )
    for name, entry in CATALOGUE.items():
        if entry.kind == "finetuned" and entry.backbone == "internimage_xl":
            twin = entry.configs[0]
            assert twin_official(REPO / twin)[0] == entry.official_config, name
