"""``mtp weights list|info|path|verify|convert|download`` as a user runs them."""

from __future__ import annotations

import pytest
import torch

from mtp.cli import main
from mtp.weights import CATALOGUE, catalogue_markdown, expected_path
from tests.bad_inputs.conftest import assert_clear_error, run_mtp


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MTP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _write(name: str) -> None:
    path = expected_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"backbone.pos_embed": torch.zeros(1, 4, 8), "decode_head.conv_seg.bias": torch.ones(7)}},
               path)  # fmt: skip


def test_list_shows_every_name_its_state_and_metric(home, capsys):
    _write("loveda:upernet_vit_b_rvsa_mae_mtp")
    assert main(["weights", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(CATALOGUE) and str(home) in lines[0]
    row = next(line for line in lines if line.startswith("loveda:upernet_vit_b_rvsa_mae_mtp "))
    assert " file " in row and "mIoU % (server) 52.39" in row
    assert row.endswith("rvsa-b-upernet-512-mae-mtp-loveda/iter_80000.pth")
    assert main(["weights", "list", "mtp:*", "--backbone", "vit_l_rvsa"]) == 0
    out = capsys.readouterr().out
    assert "mtp:vit_l_rvsa " in out and "vit_b" not in out and "missing" in out
    assert main(["weights", "list", "--markdown"]) == 0
    assert capsys.readouterr().out == catalogue_markdown()


def test_info_tells_where_to_get_a_file_and_how_to_build_its_model(home, capsys):
    assert main(["weights", "info", "dior:faster_rcnn_vit_l_rvsa_mae_mtp"]) == 0
    out = capsys.readouterr().out
    for fragment in (
        "epoch_12.pth", str(home / "faster_rcnn_rvsa_l_800_mae_mtp_dior" / "epoch_12.pth"),
        "https://pan.baidu.com/s/1yiJISQYg0Xl84PvZr_r84w?pwd=ag0x", "load_mmdet_detector",
        'create_model("faster_rcnn_vit_l_rvsa", num_classes=20, img_size=800, drop_path_rate=0.3, '
        'pretrained="dior:faster_rcnn_vit_l_rvsa_mae_mtp")',
        "RS_Tasks_Finetune/Horizontal_Detection/configs/mtp/dior/faster_rcnn_rvsa_l_800_mae_mtp_dior.py",
        "configs/detection/faster-rcnn-rvsa-l-800-mae-mtp-dior.yaml", "AP50 % 81.70", "not recorded yet",
    ):  # fmt: skip
        assert fragment in out, fragment
    assert main(["weights", "info", "imp:internimage_xl"]) == 0
    assert "huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_xl_22kto1k_384.pth" in capsys.readouterr().out


def test_path_verify_and_convert(home, capsys):
    assert main(["weights", "path", "mtp:vit_b_rvsa", "--expected"]) == 0
    assert capsys.readouterr().out.strip() == str(home / "last_vit_b_rvsa_ss_is_rd_pretrn_model_encoder.pth")
    assert main(["weights", "path", "mtp:vit_b_rvsa"]) == 1
    assert "put it at" in capsys.readouterr().err
    name = "loveda:upernet_vit_b_rvsa_mae_mtp"
    _write(name)
    assert main(["weights", "verify", name]) == 0 and "recorded (first use)" in capsys.readouterr().out
    assert main(["weights", "verify", "--all"]) == 0
    out = capsys.readouterr().out
    assert f"{name}: " in out and " ok" in out and "1 file(s) checked" in out
    assert main(["weights", "convert", name]) == 0 and "wrote" in capsys.readouterr().out
    assert main(["weights", "convert", name]) == 0 and "already converted" in capsys.readouterr().out
    assert main(["weights", "path", name]) == 0
    assert capsys.readouterr().out.strip().endswith("rvsa-b-upernet-512-mae-mtp-loveda/iter_80000.safetensors")
    expected_path(name).write_bytes(b"changed")
    assert main(["weights", "verify", name]) == 1
    assert "differs from" in capsys.readouterr().err
    assert main(["weights", "verify", name, "--reset"]) == 0


def test_errors_reach_the_user_as_one_clear_message(home):
    result = run_mtp("weights", "path", "mtp:vit_b_rsva")
    assert_clear_error(result, "unknown weights 'mtp:vit_b_rsva'", "did you mean mtp:vit_b_rvsa")
    result = run_mtp("weights", "path", "whu:changenet_vit_l_rvsa_mae_mtp")
    assert_clear_error(result, str(home / "rvsa-l-unet-256-mae-mtp_whu" / "epoch_200.pth"),
                       "https://1drv.ms/f/s!AiSncQLqo7V6gVjJ6TUTsQg62SaO?e=bxFnH5")  # fmt: skip
    result = run_mtp("weights", "download", "cdd:changenet_vit_b_rvsa_mae_mtp")
    assert_clear_error(result, "has no direct download link", "Change Detection")
