"""Layer-wise lr decay: the official ViT fine-tuning rule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mtp.models import create_backbone
from mtp.tasks.optim import build_adamw, layer_decay_param_groups, vit_layer_id


class Segmentor(nn.Module):
    """backbone.* + decode_head.*, named like the official fine-tuning models."""

    def __init__(self, depth: int = 4):
        super().__init__()
        self.backbone = create_backbone(
            "vit_b_rvsa", img_size=64, embed_dim=32, depth=depth, num_heads=2, interval=2, out_indices=(0, 1, 2, 3)
        )
        self.decode_head = nn.Sequential(nn.Conv2d(32, 8, 1), nn.BatchNorm2d(8))


def official_rule(name: str, param: torch.Tensor, depth: int, decay: float, lr: float, wd: float):
    """Direct transcription of the official rule (docs/RECIPES.md#layer-wise-lr-decay) for one parameter."""
    if name in ("backbone.cls_token", "backbone.mask_token", "backbone.pos_embed") or name.startswith(
        "backbone.patch_embed"
    ):
        layer = 0
    elif name.startswith("backbone.blocks."):
        layer = int(name.split(".")[2]) + 1
    else:
        layer = depth + 1
    no_wd = param.ndim == 1 or name.endswith(".bias") or "pos_embed" in name
    return lr * decay ** (depth + 1 - layer), 0.0 if no_wd else wd


def test_every_parameter_gets_the_official_lr_and_weight_decay():
    model = Segmentor(depth=4)
    groups = layer_decay_param_groups(model, lr=6e-5, weight_decay=0.05, layer_decay=0.9)
    seen = {}
    for group in groups:
        for name, param in zip(group["param_names"], group["params"], strict=True):
            seen[name] = (group["lr"], group["weight_decay"])
            assert param is model.get_parameter(name)
    assert set(seen) == {n for n, _ in model.named_parameters()}
    for name, param in model.named_parameters():
        lr, wd = official_rule(name, param, 4, 0.9, 6e-5, 0.05)
        assert seen[name][0] == pytest.approx(lr, rel=1e-12), name
        assert seen[name][1] == wd, name


def test_vit_b_first_group_scale_matches_the_official_logs():
    """Logged first-group lr = base x 0.9**13 = 0.254 x base for ViT-B (official logs;
    docs/RECIPES.md#layer-wise-lr-decay)."""
    with torch.device("meta"):
        model = nn.Module()
        model.backbone = create_backbone("vit_b_rvsa", img_size=512)
    groups = layer_decay_param_groups(model, lr=1.0, weight_decay=0.05, layer_decay=0.9)
    assert groups[0]["layer_id"] == 0
    assert groups[0]["lr"] == pytest.approx(0.9**13)
    assert round(groups[0]["lr"], 3) == 0.254
    assert vit_layer_id("backbone.blocks.11.attn.qkv.weight", 12) == 12
    assert vit_layer_id("backbone.fpn1.0.weight", 12) == 13


def test_frozen_parameters_are_left_out_and_no_decay_keeps_the_wd_rule():
    model = Segmentor()
    model.backbone.patch_embed.requires_grad_(False)
    groups = layer_decay_param_groups(model, lr=1e-3, weight_decay=0.05, layer_decay=None)
    names = [n for g in groups for n in g["param_names"]]
    assert not any(n.startswith("backbone.patch_embed") for n in names)
    assert all(g["lr"] == 1e-3 for g in groups)
    assert {g["weight_decay"] for g in groups if "no_decay" in g["group_name"]} == {0.0}


def test_backbone_alone_with_empty_prefix_and_adamw_step():
    backbone = Segmentor(depth=4).backbone
    optimizer = build_adamw(backbone, lr=1e-3, weight_decay=0.05, layer_decay=0.5, prefix="")
    lrs = {g["group_name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs["layer_0_decay"] == pytest.approx(1e-3 * 0.5**5)
    assert lrs["layer_5_decay"] == pytest.approx(1e-3)  # fpn adapters
    before = backbone.blocks[0].mlp.fc1.weight.detach().clone()
    sum(f.sum() for f in backbone(torch.randn(1, 3, 64, 64))).backward()
    optimizer.step()
    assert not torch.equal(before, backbone.blocks[0].mlp.fc1.weight)


def test_fused_adamw_is_chosen_on_cuda_only_and_takes_the_same_step():
    """fused=None: the fused kernel only when every parameter is on CUDA; forced on CPU it gives the same update."""
    torch.manual_seed(0)
    models = [Segmentor(depth=4), Segmentor(depth=4)]
    models[1].load_state_dict(models[0].state_dict())
    default = build_adamw(models[0], lr=1e-2, weight_decay=0.05, layer_decay=0.9)
    fused = build_adamw(models[1], lr=1e-2, weight_decay=0.05, layer_decay=0.9, fused=True)
    assert not default.defaults["fused"] and fused.defaults["fused"]
    x = torch.randn(1, 3, 64, 64)
    for model, optimizer in zip(models, (default, fused), strict=True):
        model.eval()  # no stochastic depth: both models see the same function
        for _ in range(2):
            optimizer.zero_grad()
            sum(f.square().mean() for f in model.backbone(x)).backward()
            optimizer.step()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_num_layers_cannot_be_inferred_without_a_vit():
    with pytest.raises(ValueError, match="num_layers"):
        layer_decay_param_groups(nn.Sequential(nn.Linear(2, 2)), lr=1.0, weight_decay=0.0, layer_decay=0.9, prefix="")


def mmengine_chained_lrs(
    n_iters: int,
    *,
    warmup_end: float,
    start_factor: float,
    cosine: tuple[int, int, int] | None = None,
    milestones: tuple[int, ...] = (),
    gamma: float = 0.1,
) -> list[float]:
    """Oracle: the lr (base 1) used at each iteration by mmengine's *chained* schedulers, stepped after every
    iteration as ParamSchedulerHook does, written from the recurrences in mmengine/optim/scheduler/
    param_scheduler.py: LinearParamScheduler (total_iters = end - begin - 1), CosineAnnealingParamScheduler
    (cosine = (begin, end, T_max)) and MultiStepParamScheduler (milestones in iterations)."""

    class Linear:
        begin, end, total = 0, warmup_end, warmup_end - 1

        def value(self, lr, last):
            if last == 0:
                return lr * start_factor
            return lr * (1 + (1 - start_factor) / (self.total * start_factor + (last - 1) * (1 - start_factor)))

    class Cosine:
        def __init__(self, begin, end, t_max):
            self.begin, self.end, self.t_max = begin, end, t_max

        def value(self, lr, last):
            if last == 0:
                return lr
            if (last - 1 - self.t_max) % (2 * self.t_max) == 0:
                return lr + (1 - math.cos(math.pi / self.t_max)) / 2
            return (1 + math.cos(math.pi * last / self.t_max)) / (1 + math.cos(math.pi * (last - 1) / self.t_max)) * lr

    class MultiStep:
        begin, end = 0, 10**9

        def value(self, lr, last):
            return lr * gamma if last in milestones else lr

    schedulers = [Linear()] + ([Cosine(*cosine)] if cosine else []) + ([MultiStep()] if milestones else [])
    state = {id(s): -1 for s in schedulers}
    lr, global_step, out = 1.0, -1, []

    def step():
        nonlocal lr, global_step
        global_step += 1
        for s in schedulers:
            if s.begin <= global_step < s.end:
                state[id(s)] += 1
                lr = s.value(lr, state[id(s)])

    step()  # every scheduler steps once when it is built
    for _ in range(n_iters):
        out.append(lr)
        step()
    return out


def test_warmup_cosine_schedule_matches_mmengine_linear_then_cosine():
    """The segmentation schedule (LinearLR(end=W) then CosineAnnealingLR(T_max=M-W, begin=W, end=M)) equals
    mmengine's chained recurrences at every iteration; the warmup reaches 1 at W - 1 (divides by W - 1)."""
    from mtp.tasks.optim import warmup_cosine_factor, warmup_cosine_scheduler

    w, m = 7, 30
    oracle = mmengine_chained_lrs(m + 3, warmup_end=w, start_factor=1e-3, cosine=(w, m, m - w))
    ours = [warmup_cosine_factor(t, warmup_iters=w, warmup_ratio=1e-3, max_iters=m) for t in range(m + 3)]
    assert ours[:m] == pytest.approx(oracle[:m], rel=1e-9, abs=1e-12)
    assert ours[w - 1] == 1.0 and ours[1] == pytest.approx(1e-3 + (1 - 1e-3) / (w - 1))
    f = lambda t: warmup_cosine_factor(t, warmup_iters=1500, warmup_ratio=1e-6, max_iters=80000)  # noqa: E731
    assert f(0) == pytest.approx(1e-6)
    assert f(1499) == f(1500) == 1.0
    assert f(1500 + 78500 // 2) == pytest.approx(0.5)
    assert f(80000) == pytest.approx(0.0, abs=1e-12) and f(90000) == pytest.approx(0.0, abs=1e-12)
    model = Segmentor(depth=4)
    optimizer = build_adamw(model, lr=6e-5, weight_decay=0.05, layer_decay=0.9)
    scheduler = warmup_cosine_scheduler(optimizer, warmup_iters=4, warmup_ratio=0.1, max_iters=10)
    base = [g["initial_lr"] for g in optimizer.param_groups]
    for _ in range(6):
        optimizer.step()
        scheduler.step()
    ratios = {round(g["lr"] / b, 12) for g, b in zip(optimizer.param_groups, base, strict=True)}
    assert ratios == {round(0.5 * (1 + math.cos(math.pi * 2 / 6)), 12)}


def test_warmup_multistep_schedule_matches_mmengine():
    from mtp.tasks.optim import warmup_multistep_factor

    def f(step, warmup=500, per_epoch=1000):
        return warmup_multistep_factor(
            step, warmup_iters=warmup, warmup_ratio=1e-6, steps_per_epoch=per_epoch, milestones=(8, 11)
        )

    oracle = mmengine_chained_lrs(130, warmup_end=5, start_factor=1e-6, milestones=(80, 110))
    assert [f(t, warmup=5, per_epoch=10) for t in range(130)] == pytest.approx(oracle, rel=1e-9, abs=1e-15)
    assert f(0) == pytest.approx(1e-6)
    assert f(499) == f(500) == f(7999) == 1.0
    assert f(8000) == pytest.approx(0.1)
    assert f(11000) == pytest.approx(0.01)
