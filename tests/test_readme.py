"""The README's Python API section runs as written: its code blocks are extracted and executed with tiny models
(the official sizes replaced by a 4-block, 32-dim ViT at 64 x 64), tiny release files under a temporary $MTP_HOME
and a small synthetic loader, and their results are checked."""

from __future__ import annotations

import re
import shlex

import pytest
import torch

import mtp.models
from mtp.cli import main
from mtp.models.pretraining import official_state_dict
from mtp.weights import expected_path
from tests.conftest import REPO

TINY = dict(embed_dim=32, depth=4, num_heads=2, interval=2, out_indices=(0, 1, 2, 3))
TINY_XL = dict(channels=16, depths=(1, 1, 2, 1), groups=(1, 2, 4, 8))


def _tiny(name: str) -> dict:
    return TINY_XL if "internimage" in name else TINY


def readme_blocks(language: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API") : text.index("## Status")]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def _save(state: dict, name: str, key: str = "state_dict") -> None:
    path = expected_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({key: state}, path)


@pytest.fixture
def tiny_world(tmp_path, monkeypatch):
    """Tiny stand-ins: create_model / create_backbone at 64 x 64 with TINY dims, and the release files they load."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MTP_HOME", str(tmp_path / "mtp_home"))
    real_model, real_backbone = mtp.models.create_model, mtp.models.create_backbone

    def create_model(name, **kwargs):
        kwargs = {**kwargs, **_tiny(name), "img_size": 64}
        if name.startswith("upernet"):
            kwargs.setdefault("channels", 16)
        return real_model(name, **kwargs)

    def create_backbone(name, **kwargs):
        return real_backbone(name, **{**kwargs, **_tiny(name), "img_size": 64})

    monkeypatch.setattr(mtp.models, "create_model", create_model)
    monkeypatch.setattr(mtp.models, "create_backbone", create_backbone)
    torch.manual_seed(0)
    encoder = real_backbone("vit_b_rvsa", img_size=64, **TINY).state_dict()
    _save(encoder, "mtp:vit_b_rvsa")
    _save(encoder, "mae:vit_b_rvsa", key="model")
    seg = real_model("upernet_vit_b_rvsa", num_classes=7, img_size=64, channels=16, **TINY)
    _save(seg.state_dict(), "loveda:upernet_vit_b_rvsa_mae_mtp")
    whole = real_model("mtp_vit_b_rvsa", img_size=64, channels=16, **TINY)
    _save(official_state_dict(whole), "mtp-whole:vit_b_rvsa")
    xl = real_backbone("internimage_xl", **TINY_XL).state_dict()
    _save({**xl, "head.weight": torch.zeros(3, 128)}, "imp:internimage_xl", key="model")  # + an ImageNet head
    return {"encoder": encoder, "seg": seg, "xl": xl}


def test_the_python_api_blocks_run_and_do_what_they_say(tiny_world, capsys):
    blocks = readme_blocks("python")
    assert len(blocks) == 6
    models, loop, weights, ops, backbones, internimage = blocks

    ns: dict = {}
    exec(compile(models, "README.md:models", "exec"), ns)
    assert ns["logits"].shape == (2, 7, 128, 128)
    torch.testing.assert_close(ns["model"].backbone.state_dict(), tiny_world["encoder"])
    torch.testing.assert_close(ns["official"].state_dict(), tiny_world["seg"].state_dict())
    assert "'upernet_vit_b_rvsa', 'upernet_vit_l_rvsa']" in capsys.readouterr().out

    g = torch.Generator().manual_seed(0)
    images = torch.randn(6, 3, 64, 64, generator=g)
    masks = (images[:, 0] > 0).long()  # learnable: class = sign of the first channel
    masks[:, :4] = 255
    loader = [(images[i : i + 2], masks[i : i + 2]) for i in range(0, 6, 2)]
    ns = {"loader": loader, "epochs": 3}
    exec(compile(loop, "README.md:fine-tuning", "exec"), ns)
    assert torch.isfinite(ns["loss"])
    saved = torch.load("upernet_loveda.pth", weights_only=True)
    torch.testing.assert_close(ns["model"].state_dict(), saved)
    assert not torch.equal(saved["decode_head.conv_seg.weight"], tiny_world["seg"].decode_head.conv_seg.weight)

    ns = {}
    exec(compile(weights, "README.md:weights", "exec"), ns)
    assert ns["path"] == expected_path("mtp:vit_b_rvsa") and ns["path"].is_file()
    assert "'loveda:upernet_internimage_xl_imp_mtp', 'loveda:upernet_vit_b_rvsa_mae_mtp'" in capsys.readouterr().out

    ns = {}
    exec(compile(ops, "README.md:ops", "exec"), ns)
    assert ns["rboxes"].shape == (2, 5) and ns["iou"].shape == (2, 2) and 0.7 < float(ns["iou"][0, 1]) < 1
    assert ns["keep"].tolist() == [0] and ns["pooled"].shape == (2, 256, 7, 7)

    ns = {}
    exec(compile(backbones, "README.md:backbones", "exec"), ns)
    assert [f.shape[-1] for f in ns["feats"]] == [128, 64, 32, 16]
    assert not ns["report"].unexpected_keys and not ns["det"].global_rel_pos and not ns["cls"].pyramid
    exec(compile(internimage, "README.md:internimage", "exec"), ns)  # continues the backbones block
    torch.testing.assert_close(ns["xl"].state_dict(), tiny_world["xl"])
    assert [f.shape[1] for f in ns["feats"]] == [16, 32, 64, 128]


def test_the_weights_commands_shown_run(tiny_world, capsys):
    for line in readme_blocks("bash")[-1].splitlines():
        argv = shlex.split(line.split("#")[0])
        if argv[:2] == ["mtp", "weights"] and argv[2] in ("list", "info", "verify"):
            assert main(argv[1:]) == 0, line
    assert "mtp:vit_l_rvsa" in capsys.readouterr().out
