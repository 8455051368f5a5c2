"""Small MTP models and hand-made multi-dataset batches (shared by the pretraining model tests)."""

from __future__ import annotations

import pytest
import torch

from mtp.models.pretraining import build_mtp_model

TINY_ENCODER = dict(embed_dim=32, depth=4, num_heads=2, interval=2, out_indices=(0, 1, 2, 3), drop_path_rate=0.0)
TINY_CLASSES = {"sota": 3, "sior": 4, "fast": 5}


def tiny_mtp(tasks=("ss", "is", "rd"), datasets=("sota", "sior", "fast"), img_size=64, **kwargs):
    counts = {d: TINY_CLASSES[d] for d in datasets}
    return build_mtp_model(img_size=img_size, datasets=datasets, tasks=tasks, num_classes=counts, channels=32,
                           **TINY_ENCODER, **kwargs)  # fmt: skip


def make_batch(num_classes: int, batch: int = 2, size: int = 64, seed: int = 0) -> dict:
    """A training batch of ``batch`` images with 2 square objects each (consistent box / mask / rbox / seg)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, size, size, generator=g)
    semantic = torch.zeros(batch, size, size, dtype=torch.long)
    boxes, labels, masks, rboxes, rlabels = [], [], [], [], []
    for b in range(batch):
        bx, lb, mk, rb = [], [], [], []
        for j in range(2):
            x0 = int(torch.randint(0, size // 2, (1,), generator=g))
            y0 = int(torch.randint(0, size // 2, (1,), generator=g))
            w = 12 + 6 * j
            c = int(torch.randint(0, num_classes, (1,), generator=g))
            m = torch.zeros(size, size, dtype=torch.uint8)
            m[y0 : y0 + w, x0 : x0 + w] = 1
            semantic[b][m.bool()] = c + 1
            bx.append([x0, y0, x0 + w, y0 + w])
            lb.append(c)
            mk.append(m)
            rb.append([x0 + w / 2, y0 + w / 2, w, w, 0.0])
        boxes.append(torch.tensor(bx, dtype=torch.float32))
        labels.append(torch.tensor(lb))
        masks.append(torch.stack(mk))
        rboxes.append(torch.tensor(rb, dtype=torch.float32))
        rlabels.append(torch.tensor(lb))
    return {"image": image, "semantic": semantic, "boxes": boxes, "labels": labels, "masks": masks,
            "rboxes": rboxes, "rlabels": rlabels, "img_hw": [(size, size)] * batch,
            "scale_factor": [(1.0, 1.0)] * batch, "ori_hw": [(size, size)] * batch,
            "image_path": [f"img{seed}_{b}.png" for b in range(batch)]}  # fmt: skip


@pytest.fixture
def batches() -> dict:
    return {d: make_batch(c, seed=i) for i, (d, c) in enumerate(TINY_CLASSES.items())}
