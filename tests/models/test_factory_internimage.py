"""create_model with InternImage: backbone arguments whose names the architecture also uses (``channels``) go
through ``backbone_kwargs``; the catalogue's whole-file defaults give way to them."""

from __future__ import annotations

import pytest
import torch

from mtp.models import create_model
from mtp.weights import expected_path

TINY = {"channels": 16, "depths": [1, 1, 2, 1], "groups": [1, 2, 4, 8], "drop_path_rate": 0.0}


def test_backbone_channels_and_decoder_channels_are_separate():
    seg = create_model("upernet_internimage_xl", num_classes=3, channels=32, backbone_kwargs=TINY).eval()
    assert seg.backbone.out_channels == [16, 32, 64, 128]
    assert seg.decode_head.lateral_convs[0].conv.weight.shape == (32, 16, 1, 1)  # UperNet width 32 on 16 channels
    assert seg.decode_head.psp_modules[0][1].conv.weight.shape == (32, 128, 1, 1)
    assert seg(torch.randn(1, 3, 64, 64)).shape == (1, 3, 16, 16)
    mtp = create_model("mtp_internimage_xl", img_size=64, channels=24, backbone_kwargs=TINY)
    assert mtp.encoder.out_channels == [16, 32, 64, 128]
    assert mtp.semsegdecoder.decode_head.bottleneck.conv.weight.shape == (24, 128 + 4 * 24, 3, 3)


def test_a_backbone_argument_given_twice_with_different_values_is_an_error():
    with pytest.raises(ValueError, match=r"'drop_path_rate' given twice: 0\.1 and 0\.0"):
        create_model("classifier_internimage_xl", num_classes=2, drop_path_rate=0.1, backbone_kwargs=TINY)
    same = create_model("classifier_internimage_xl", num_classes=2, drop_path_rate=0.0, backbone_kwargs=TINY)
    assert same.head.fc.weight.shape == (2, 128)


def test_whole_file_defaults_give_way_to_backbone_kwargs(tmp_path, monkeypatch):
    """The catalogue entry of the released LoveDA file says drop_path_rate 0.2; backbone_kwargs overrides it."""
    monkeypatch.setenv("MTP_HOME", str(tmp_path))
    source = create_model("upernet_internimage_xl", num_classes=7, channels=16, backbone_kwargs=TINY)
    path = expected_path("loveda:upernet_internimage_xl_imp_mtp")
    path.parent.mkdir(parents=True)
    torch.save({"meta": {}, "state_dict": source.state_dict()}, path)
    model = create_model("upernet_internimage_xl", pretrained="loveda:upernet_internimage_xl_imp_mtp", channels=16,
                         backbone_kwargs=TINY)  # fmt: skip
    torch.testing.assert_close(model.state_dict(), source.state_dict())
    blocks = [block for level in model.backbone.levels for block in level.blocks]
    assert all(isinstance(block.drop_path, torch.nn.Identity) for block in blocks)
