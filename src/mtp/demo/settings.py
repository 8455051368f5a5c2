"""The demo protocol's numbers in one place (:class:`DemoSettings`), with a full and a small preset.

Every arm of a task gets exactly the same data, schedule and hyper-parameters; only the initialisation
differs (``ARMS``). Sizes are in pixels, learning rates are AdamW peak rates, steps are optimiser steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

#: arm id -> label shown in the table and the report
ARMS: dict[str, str] = {
    "scratch": "from scratch",
    "mtp": "MTP encoder",
    "mtp_decoder": "MTP encoder + reused decoder",
}

#: the tiny ViT+RVSA shared by the pretraining and every fine-tuning run (configs/pretraining/tiny-samrs-cpu.yaml)
TINY_VIT: dict = {
    "embed_dim": 96,
    "depth": 4,
    "num_heads": 3,
    "interval": 2,
    "out_indices": [0, 1, 2, 3],
    "drop_path_rate": 0.0,
}


@dataclass(frozen=True)
class TaskSettings:
    """One downstream family: ``labelled`` training tiles and ``held_out`` evaluation tiles of ``tile`` px
    (train crops of ``crop`` px), ``steps`` AdamW steps of ``batch_size`` crops at peak ``lr`` with layer-wise
    decay ``layer_decay`` after ``warmup`` steps (0.76 over this 4-block encoder gives the patch embedding the
    same fraction of the peak rate, 0.76 ** 5 ≈ 0.25, as the official 0.9 over 12 blocks, 0.9 ** 13 ≈ 0.25). The
    held-out metric is measured on every held-out tile every ``eval_every`` steps (the learning curve; it must
    divide ``steps``; the last point is the reported number). ``arms``: the initialisations compared; ``gated``:
    whether the demo fails when this family's MTP-encoder gain is below 2σ."""

    name: str
    arms: tuple[str, ...]
    gated: bool
    labelled: int = 8
    held_out: int = 32
    tile: int = 256
    crop: int = 128
    steps: int = 300
    batch_size: int = 4
    lr: float = 5e-4
    layer_decay: float = 0.76
    warmup: int = 20
    eval_every: int = 100
    train_seed: int = 200
    held_out_seed: int = 300


#: LoveDA-format segmentation: the gated family (three arms)
SEGMENTATION = TaskSettings("segmentation", ("scratch", "mtp", "mtp_decoder"), gated=True)
#: LEVIR-format change detection (no pretraining decoder to reuse: two arms), reported, not gated (docs/DEMO.md)
CHANGE_DETECTION = TaskSettings(
    "change_detection", ("scratch", "mtp"), gated=False, steps=160, eval_every=40, train_seed=600, held_out_seed=700
)


@dataclass(frozen=True)
class DemoSettings:
    """The whole study. ``pretrain_*``: images per SAMRS set (SOTA, SIOR, FAST) of ``pretrain_size`` px from
    generator seed ``pretrain_seed`` (disjoint from every downstream seed), ``pretrain_steps`` steps of the
    three-task pretraining; ``seeds``: fine-tuning seeds (initialisation of the new layers, crop and batch
    order; the labelled tiles are the same for every seed and arm); ``grid_tiles``: held-out tiles drawn in the
    report; ``jobs``: fine-tuning runs in parallel (one CPU thread each)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    pretrain_images: int = 160
    pretrain_size: int = 192
    pretrain_steps: int = 300
    pretrain_seed: int = 100
    segmentation: TaskSettings = SEGMENTATION
    change_detection: TaskSettings = CHANGE_DETECTION
    grid_tiles: int = 4
    jobs: int = 2

    @property
    def tasks(self) -> tuple[TaskSettings, ...]:
        return (self.segmentation, self.change_detection)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        seg, cd = self.segmentation, self.change_detection
        return (
            f"A tiny ViT+RVSA is pretrained for {self.pretrain_steps} steps on all three MTP tasks (semantic "
            f"segmentation, instance segmentation, rotated detection) over synthetic SOTA, SIOR and FAST "
            f"({self.pretrain_images} images each). It is then fine-tuned with only {seg.labelled} labelled tiles "
            f"on LoveDA-format segmentation ({seg.steps} steps) and {cd.labelled} labelled pairs on LEVIR-format "
            f"change detection ({cd.steps} steps), from scratch and from the pretrained weights, with identical data "
            f"and hyper-parameters, over seeds {list(self.seeds)}; the metric is measured on {seg.held_out} "
            f"held-out tiles never seen in pretraining or fine-tuning."
        )


def small_settings() -> DemoSettings:
    """The protocol at a size for the slow test (about 5 minutes on 2 cores): same shape, fewer steps and tiles."""
    full = DemoSettings()
    return replace(
        full,
        pretrain_images=48,
        pretrain_steps=200,
        segmentation=replace(full.segmentation, steps=200, eval_every=50, held_out=16),
        change_detection=replace(full.change_detection, steps=80, eval_every=40, held_out=8),
        grid_tiles=2,
    )
