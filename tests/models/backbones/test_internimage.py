"""InternImage: official names (XL key list), official numerics (golden file), any size, both DCN paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtp.models import create_backbone, list_backbones
from mtp.models.backbones.internimage import InternImage
from tests.models.backbones.base import BackboneContract
from tests.official_keys import official_keys

DATA = Path(__file__).resolve().parents[2] / "data"
GOLDEN = DATA / "golden" / "internimage_tiny_a.pt"
TINY = dict(channels=16, depths=(1, 1, 2, 1), groups=(1, 2, 4, 8), drop_path_rate=0.1)


@pytest.fixture(scope="module")
def golden() -> dict:
    """Official InternImage forward (MTP's intern_image.py, core DCNv3_pytorch) on perturbed random
    weights; cases 2x3x64x64 and 1x3x100x72 (not a multiple of 32). See tests/data/README.md."""
    return torch.load(GOLDEN, map_location="cpu", weights_only=True)["tiny_a"]


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours - ref).abs().max() / ref.abs().max()).item()


class TestInternImage(BackboneContract):
    input_sizes = ((64, 64), (96, 64), (64, 128))

    def build(self, **overrides):
        return create_backbone("internimage_xl", **{**TINY, **overrides})

    @pytest.mark.parametrize("bad_shape", [(1, 4, 64, 64), (3, 64, 64)])
    def test_bad_input_shape_is_a_clear_error(self, bad_shape):
        model = self.build().eval()
        with pytest.raises(ValueError, match="expects"):
            model(torch.randn(*bad_shape))


def test_registered_with_the_official_xl_names_shapes_and_order():
    assert "internimage_xl" in list_backbones()
    with torch.device("meta"):
        model = create_backbone("internimage_xl")
    expected = list(official_keys("internimage_xl_keys").items())
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == expected
    assert len(expected) == 875
    assert sum(p.numel() for p in model.parameters()) == 328_971_228
    assert model.out_channels == [192, 384, 768, 1536] and model.strides == [4, 8, 16, 32]
    assert model.get_num_layers() == 39


def test_xl_defaults_follow_the_official_configs():
    with torch.device("meta"):
        model = create_backbone("internimage_xl")
    blocks = [b for level in model.levels for b in level.blocks]
    assert len(blocks) == 39
    assert blocks[0].drop_path.__class__.__name__ == "Identity"
    assert blocks[-1].drop_path.drop_prob == pytest.approx(0.2)
    assert blocks[20].drop_path.drop_prob == pytest.approx(0.2 * 20 / 38)
    assert all(b.post_norm and b.layer_scale for b in blocks)
    assert [level.blocks[0].dcn.group for level in model.levels] == [12, 24, 48, 96]
    assert {b.dcn.offset_scale for b in blocks} == {2.0}
    assert all(level.norm is None for level in model.levels)  # post-norm: no level LN


@pytest.mark.parametrize("dcn_impl", ["gather", "reference"])
def test_matches_official_golden_outputs(golden, dcn_impl):
    model = create_backbone("internimage_xl", **golden["config"], **golden["common"], drop_path_rate=0.0)
    model.load_state_dict(golden["state_dict"], strict=True)
    model.set_dcn_impl(dcn_impl)
    model.eval()
    sizes = []
    for case in golden["cases"]:
        with torch.no_grad():
            outputs = model(case["input"])
        assert len(outputs) == len(case["outputs"]) == 4
        for ours, ref in zip(outputs, case["outputs"], strict=True):
            assert ours.shape == ref.shape
            assert relative_error(ours, ref) <= 1e-4
        sizes.append(tuple(case["input"].shape[-2:]))
    assert (100, 72) in sizes


def test_sizes_not_divisible_by_32_give_ceil_maps():
    model = create_backbone("internimage_xl", **TINY).eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 100, 70))
    assert [tuple(f.shape[-2:]) for f in feats] == [(25, 18), (13, 9), (7, 5), (4, 3)]
    assert [f.shape[1] for f in feats] == [16, 32, 64, 128]


def perturbed(model: InternImage, seed: int) -> InternImage:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.2)
    return model


def test_gather_and_reference_paths_agree_on_outputs_and_every_gradient():
    config = dict(channels=24, depths=(1, 2, 1, 1), groups=(3, 6, 12, 24), drop_path_rate=0.0)
    models = {}
    for impl in ("gather", "reference"):
        torch.manual_seed(3)
        models[impl] = perturbed(create_backbone("internimage_xl", dcn_impl=impl, **config), seed=5).train()
    x = torch.randn(2, 3, 72, 52)
    feats, grads = {}, {}
    for impl, model in models.items():
        feats[impl] = model(x)
        sum((f * torch.linspace(-1, 1, f.numel()).view_as(f)).sum() for f in feats[impl]).backward()
        grads[impl] = {n: p.grad for n, p in model.named_parameters()}
    for a, b in zip(feats["gather"], feats["reference"], strict=True):
        assert relative_error(a.detach(), b.detach()) < 1e-5
    for name, ref in grads["reference"].items():
        assert relative_error(grads["gather"][name], ref) < 1e-4, name


def test_out_indices_subset_and_channels():
    model = create_backbone("internimage_xl", out_indices=(1, 3), **TINY).eval()
    assert model.out_channels == [32, 128] and model.strides == [8, 32]
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, 32, 8, 8), (1, 128, 2, 2)]


def test_pre_norm_variant_has_level_norms_and_no_gammas_without_layer_scale():
    model = InternImage(channels=16, depths=(1, 1, 1, 1), groups=(1, 2, 4, 8), post_norm=False, layer_scale=None)
    keys = model.state_dict().keys()
    assert "levels.0.norm.0.weight" in keys and "levels.3.norm.0.weight" in keys
    assert not any("gamma" in k for k in keys)
    assert model(torch.randn(1, 3, 32, 32))[0].shape == (1, 16, 8, 8)


def test_official_constructor_names_are_accepted():
    model = create_backbone("internimage_xl", with_cp=True, core_op="DCNv3_pytorch", drop_rate=0.1, **TINY)
    assert model.use_checkpoint
    assert model.pos_drop.p == 0.1 and model.levels[0].blocks[0].mlp.drop1.p == 0.1
    assert model.state_dict().keys() == create_backbone("internimage_xl", **TINY).state_dict().keys()


def test_official_initialisation():
    model = create_backbone("internimage_xl", **TINY)
    dcn = model.levels[1].blocks[0].dcn
    assert torch.count_nonzero(dcn.offset.weight) == 0 and torch.count_nonzero(dcn.mask.bias) == 0
    assert torch.equal(model.levels[2].blocks[1].gamma1, torch.full((64,), 1e-5))
    assert model.levels[0].blocks[0].mlp.fc1.weight.std() < 0.03  # trunc-normal(0.02)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"norm_layer": "BN"}, "only 'LN'"),
        ({"center_feature_scale": True}, "InternImage-H/G"),
        ({"res_post_norm": True}, "InternImage-H/G"),
        ({"level2_post_norm": True}, "InternImage-H/G"),
        ({"out_indices": (2, 1)}, "out_indices"),
        ({"out_indices": (0, 4)}, "out_indices"),
        ({"dcn_impl": "cuda"}, "dcn_impl"),
        ({"depths": (1, 1, 1)}, "4 levels"),
        ({"act_layer": "Mish"}, "act_layer"),
        ({"img_size": 0}, "img_size"),
        ({"core_op": "DCNv4"}, "core_op"),
        ({"use_checkpoint": True, "with_cp": False}, "with_cp"),
    ],
)
def test_invalid_configurations_are_clear_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        create_backbone("internimage_xl", **{**TINY, **overrides})
