"""ViT+RVSA: official numerics (golden files), official names, any input size, both paths."""

from __future__ import annotations

import pytest
import torch

from mtp.models import create_backbone, list_backbones
from mtp.models.backbones.vit_rvsa import ViTRVSA
from tests.models.backbones.base import BackboneContract
from tests.official_keys import official_keys

TINY = dict(embed_dim=32, depth=4, num_heads=2, interval=2, out_indices=(0, 1, 2, 3), drop_path_rate=0.1)


def golden_model(entry: dict) -> ViTRVSA:
    cfg = entry["cfg"]
    model = ViTRVSA(
        img_size=cfg["img_size"],
        patch_size=cfg["patch_size"],
        embed_dim=cfg["embed_dim"],
        depth=cfg["depth"],
        num_heads=cfg["num_heads"],
        mlp_ratio=cfg["mlp_ratio"],
        qkv_bias=cfg["qkv_bias"],
        interval=cfg["interval"],
        out_indices=cfg["out_indices"],
        drop_path_rate=cfg["drop_path_rate"],
        global_rel_pos=entry["variant"] == "seg",
    )
    model.load_state_dict(entry["state_dict"], strict=True)  # official names: nothing missing/unexpected
    return model.eval()


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours - ref).abs().max() / ref.abs().max()).item()


class TestViTRVSAPyramid(BackboneContract):
    input_sizes = ((64, 64), (96, 160), (112, 112))

    def build(self, **overrides):
        return create_backbone("vit_b_rvsa", img_size=64, **{**TINY, **overrides})


class TestViTRVSATaps(BackboneContract):
    """Classification / change-detection copy: 4 raw stride-16 maps, no fpn."""

    input_sizes = ((64, 64), (48, 80))
    expected_strides = (16, 16, 16, 16)

    def build(self, **overrides):
        return create_backbone("vit_b_rvsa", img_size=64, pyramid=False, **{**TINY, **overrides})


class TestViTRVSADetectionCopy(BackboneContract):
    """RVSA_MTP_branches: global blocks without relative-position tables."""

    input_sizes = ((64, 64), (80, 48))

    def build(self, **overrides):
        return create_backbone("vit_b_rvsa", img_size=64, global_rel_pos=False, **{**TINY, **overrides})


def assert_matches_golden(outputs: tuple[torch.Tensor, ...], golden_outputs: list[dict]) -> None:
    """Compare with stored maps; large maps are stored as a fixed element sample (tests/data/README.md)."""
    assert len(outputs) == len(golden_outputs) == 4
    for ours, ref in zip(outputs, golden_outputs, strict=True):
        assert list(ours.shape) == ref["shape"]
        values = ours.flatten()[ref["index"].long()] if ref["index"] is not None else ours
        assert relative_error(values, ref["values"]) <= 1e-4


PATHS = ["sdpa", "flex", "reference"]


@pytest.mark.parametrize("attn_impl", PATHS)
def test_matches_official_golden_outputs(golden, attn_impl):
    """Padded windows (18x18 tokens -> 21x21) and the global blocks' decomposed relative positions."""
    entry = golden["seg_288"]
    model = golden_model(entry)
    model.set_attn_impl(attn_impl)
    with torch.no_grad():
        assert_matches_golden(model(entry["input"]), entry["outputs"])


@pytest.mark.parametrize("attn_impl", PATHS)
def test_detection_copy_is_the_segmentation_copy_with_zero_global_tables(golden, attn_impl):
    """RVSA_MTP_branches (no global rel-pos tables) equals RVSA_MTP with those tables at zero, as the official
    outputs of both copies do; with the golden parity above this pins the detection copy's numerics."""
    entry = golden["seg_288"]
    state = {k: v for k, v in entry["state_dict"].items() if "full_attn_rel_pos" not in k}
    det = golden_model({**entry, "variant": "det_branches", "state_dict": state})
    zeros = {k: torch.zeros_like(v) if "full_attn_rel_pos" in k else v for k, v in entry["state_dict"].items()}
    seg = golden_model({**entry, "state_dict": zeros})
    for model in (det, seg):
        model.set_attn_impl(attn_impl)
    with torch.no_grad():
        for a, b in zip(det(entry["input"]), seg(entry["input"]), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_golden_state_dict_has_exactly_our_keys(golden):
    entry = golden["seg_288"]
    assert list(golden_model(entry).state_dict()) == list(entry["state_dict"])


@pytest.mark.parametrize(
    "name,keys_file", [("vit_b_rvsa", "vit_b_rvsa_512_keys"), ("vit_l_rvsa", "vit_l_rvsa_512_keys")]
)
def test_official_names_and_shapes_at_512(name, keys_file):
    official = official_keys(keys_file)
    with torch.device("meta"):
        model = create_backbone(name, img_size=512)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == official
    assert model.out_channels == [official["pos_embed"][-1]] * 4


def test_detection_copy_drops_exactly_the_global_tables():
    with torch.device("meta"):
        seg = create_backbone("vit_b_rvsa", img_size=800)
        det = create_backbone("vit_b_rvsa", img_size=800, global_rel_pos=False)
    dropped = set(seg.state_dict()) - set(det.state_dict())
    assert dropped == {f"blocks.{i}.attn.full_attn_rel_pos_{a}" for i in (2, 5, 8, 11) for a in "hw"}
    assert len(det.state_dict()) == 235  # the official detection copy (RVSA_MTP_branches)


def test_registry_lists_both_sizes_and_rejects_unknown_names():
    assert {"vit_b_rvsa", "vit_l_rvsa"} <= set(list_backbones())
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone("vit_h_rvsa")


def test_official_hyperparameters():
    with torch.device("meta"):
        b = create_backbone("vit_b_rvsa")
        large = create_backbone("vit_l_rvsa")
    assert [i for i in range(12) if b.is_global_block(i)] == [2, 5, 8, 11]
    assert [i for i in range(24) if large.is_global_block(i)] == [5, 11, 17, 23]
    assert b.out_indices == (3, 5, 7, 11) and large.out_indices == (7, 11, 15, 23)
    assert b.blocks[0].attn.ws == 7 and b.blocks[0].norm1.eps == 1e-6


def randomise_position_terms(model) -> None:
    """Non-trivial tables and window predictors, so that every term of the logits is exercised."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "rel_pos" in name or "sampling" in name:
                p.normal_(0, 0.3)


def outputs_and_gradients(model, x, impl, dtype=torch.float32):
    model.zero_grad()
    model.set_attn_impl(impl)
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        feats = model(x)
    sum((f.float() * torch.linspace(0, 1, f.numel()).reshape(f.shape)).sum() for f in feats).backward()
    return [f.detach().float() for f in feats], {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("impl", ["sdpa", "flex"])
@pytest.mark.parametrize("variant", [dict(), dict(global_rel_pos=False), dict(pyramid=False)])
@pytest.mark.parametrize("size", [(64, 64), (96, 160), (32, 48)])
def test_fast_paths_match_reference_path_forward_and_backward(impl, variant, size):
    model = create_backbone("vit_b_rvsa", img_size=64, **{**TINY, "drop_path_rate": 0.0, **variant})
    randomise_position_terms(model)
    x = torch.randn(2, 3, *size)
    ref_out, ref_grad = outputs_and_gradients(model, x, "reference")
    out, grad = outputs_and_gradients(model, x, impl)
    for a, b in zip(out, ref_out, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for name in ref_grad:
        torch.testing.assert_close(grad[name], ref_grad[name], rtol=1e-3, atol=1e-5, msg=name)


def assert_bf16_errors_like_reference(low, ref_low, truth) -> None:
    """bf16 results ``low`` err against the float32 ``truth`` as the reference path's bf16 results ``ref_low`` do.

    Each is (outputs, {name: grad}). Output maps: at most 2x the reference's error + 1e-3. Gradients: single
    small gradients (LayerNorm weights, biases) swing by tens of percent between two bf16 runs, so the
    median and the 90th percentile of the per-parameter errors are compared (at most 1.5x the reference's).
    """
    (out, grad), (ref_out, ref_grad), (true_out, true_grad) = low, ref_low, truth
    for ours, ref, exact in zip(out, ref_out, true_out, strict=True):
        assert relative_error(ours, exact) <= 2 * relative_error(ref, exact) + 1e-3
    ours = torch.tensor([relative_error(grad[n], g) for n, g in true_grad.items()])
    theirs = torch.tensor([relative_error(ref_grad[n], g) for n, g in true_grad.items()])
    for q in (0.5, 0.9):
        assert ours.quantile(q) <= 1.5 * theirs.quantile(q) + 1e-3, (q, ours.quantile(q), theirs.quantile(q))


@pytest.mark.parametrize("impl", ["sdpa", "flex"])
def test_fast_paths_stay_within_bf16_tolerance_of_the_reference_path(impl):
    """bf16 autocast: the fast path errs against the float32 result no more than the reference path in bf16."""
    model = create_backbone("vit_b_rvsa", img_size=64, **{**TINY, "drop_path_rate": 0.0})
    randomise_position_terms(model)
    x = torch.randn(2, 3, 96, 96)
    truth = outputs_and_gradients(model, x, "reference")
    ref_low = outputs_and_gradients(model, x, "reference", torch.bfloat16)
    assert_bf16_errors_like_reference(outputs_and_gradients(model, x, impl, torch.bfloat16), ref_low, truth)


def test_auto_resolves_per_device(monkeypatch):
    from mtp.models.backbones import rvsa_attention

    assert rvsa_attention.resolve_attn_impl("auto", torch.device("cpu")) == "sdpa"
    assert rvsa_attention.resolve_attn_impl("reference", torch.device("cuda")) == "reference"
    monkeypatch.setitem(rvsa_attention.AUTO_ATTN_IMPL, "cuda", "flex")
    monkeypatch.setattr(rvsa_attention, "flex_attention_available", lambda: True)
    assert rvsa_attention.resolve_attn_impl("auto", torch.device("cuda")) == "flex"
    assert rvsa_attention.resolve_attn_impl("auto", torch.device("cpu")) == "sdpa"
    monkeypatch.setattr(rvsa_attention, "flex_attention_available", lambda: False)
    assert rvsa_attention.resolve_attn_impl("auto", torch.device("cuda")) == "sdpa"  # no Triton: no flex
    model = create_backbone("vit_b_rvsa", img_size=64, **TINY)
    assert {b.attn.attn_impl for b in model.blocks} == {"auto"}


def test_taps_are_channels_last_views_of_the_tokens():
    model = create_backbone("vit_b_rvsa", img_size=64, pyramid=False, **TINY).eval()
    with torch.no_grad():
        feats = model(torch.randn(2, 3, 64, 96))
    for f in feats:
        assert f.shape == (2, 32, 4, 6) and f.stride() == (4 * 6 * 32, 1, 6 * 32, 32)  # channels-last strides


def test_regional_compilation_does_not_recompile_for_batch_sizes_or_seen_sizes():
    """compile_blocks: one graph per block kind and token grid; batch sizes >= 2 and sizes seen before reuse it.
    The eager backend keeps this fast: guards and graphs are dynamo's, whatever the backend."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager = create_backbone("vit_b_rvsa", img_size=64, **{**TINY, "drop_path_rate": 0.0})
    compiled = create_backbone("vit_b_rvsa", img_size=64, **{**TINY, "drop_path_rate": 0.0})
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_blocks(backend="eager")
    assert list(compiled.state_dict()) == list(eager.state_dict())
    graphs = []
    for batch, size in [(2, (64, 96)), (3, (64, 96)), (2, (96, 96)), (4, (96, 96)), (2, (64, 96))]:
        x = torch.randn(batch, 3, *size)
        for a, b in zip(compiled(x), eager(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs == [2, 2, 4, 4, 4]  # window + global block per token grid
    torch._dynamo.reset()


def test_other_input_size_equals_a_model_built_for_that_size(tmp_path):
    """Run-time resizing of pos_embed and global tables == the official load-time resizing."""
    small = create_backbone("vit_b_rvsa", img_size=64, **TINY).eval()
    with torch.no_grad():
        for name, p in small.named_parameters():
            if "full_attn" in name:
                p.normal_(0, 0.5)
    torch.save({"state_dict": small.state_dict()}, tmp_path / "small.pth")
    native = create_backbone("vit_b_rvsa", img_size=112, pretrained=tmp_path / "small.pth", **TINY).eval()
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        for a, b in zip(small(x), native(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        small(x)  # the cached path (no grad) gives the same result again
        for a, b in zip(small(x), native(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_resized_tables_follow_parameter_updates():
    """The no-grad cache must not serve stale tables after an optimiser step."""
    model = create_backbone("vit_b_rvsa", img_size=64, **TINY).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        before = model(x)[2].clone()
        model.pos_embed.add_(1.0)
        model.blocks[1].attn.full_attn_rel_pos_h.add_(1.0)
        after = model(x)[2]
    assert not torch.allclose(before, after)
    with torch.no_grad():
        reference = create_backbone("vit_b_rvsa", img_size=64, **TINY).eval()
        reference.load_state_dict(model.state_dict())
        torch.testing.assert_close(reference(x)[2], after)


def test_drop_path_is_stochastic_in_training_only():
    model = create_backbone("vit_b_rvsa", img_size=64, **{**TINY, "drop_path_rate": 0.5})
    x = torch.randn(4, 3, 64, 64)
    model.train()
    assert not torch.allclose(model(x)[3], model(x)[3])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[3], model(x)[3])


def test_in_chans_override_builds_a_wider_patch_embedding():
    model = create_backbone("vit_b_rvsa", img_size=64, in_chans=4, **TINY).eval()
    assert model.patch_embed.proj.weight.shape[1] == 4
    with torch.no_grad():
        assert model(torch.randn(1, 4, 64, 64))[0].shape == (1, 32, 16, 16)


def test_tiny_maps_smaller_than_one_window_stay_finite():
    """The official offset rule divides by H // 7, zero below 112 px; ours stays finite."""
    model = create_backbone("vit_b_rvsa", img_size=32, **TINY).eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 32, 32))
    assert all(torch.isfinite(f).all() for f in feats)


def test_bf16_autocast_stays_close_to_fp32():
    model = create_backbone("vit_b_rvsa", img_size=64, **TINY).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    for a, b in zip(low, ref, strict=True):
        assert relative_error(a.float(), b) < 5e-2


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(out_indices=(0, 1, 2)), "out_indices"),
        (dict(out_indices=(0, 1, 2, 9)), "out_indices"),
        (dict(attn_impl="flash3"), "attn_impl"),
        (dict(num_heads=3), "divisible"),
    ],
)
def test_invalid_configuration_is_a_clear_error(overrides, match):
    with pytest.raises(ValueError, match=match):
        create_backbone("vit_b_rvsa", img_size=64, **{**TINY, **overrides})
