"""A tiny LightningModule / DataModule on a ViT+RVSA backbone, to exercise the LightningCLI wiring."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from mtp.models import create_backbone


class BackboneRegression(L.LightningModule):
    """Regress the mean of each image from the pooled last feature map."""

    def __init__(self, img_size: int = 32, lr: float = 1e-3):
        super().__init__()
        self.save_hyperparameters()
        self.backbone = create_backbone(
            "vit_b_rvsa", img_size=img_size, embed_dim=16, depth=4, num_heads=2, interval=2, out_indices=(0, 1, 2, 3)
        )
        self.head = torch.nn.Linear(16, 1)

    def forward(self, x):
        return self.head(self.backbone(x)[-1].mean((2, 3))).squeeze(1)

    def training_step(self, batch, _):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))

    def test_step(self, batch, _):
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self(x), y))

    def predict_step(self, batch, _):
        return self(batch[0])

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)


class RandomImages(L.LightningDataModule):
    def __init__(self, img_size: int = 32, n: int = 8, batch_size: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, 3, img_size, img_size, generator=g)
        self.data = TensorDataset(x, x.mean((1, 2, 3)))
        self.batch_size = batch_size

    def _loader(self):
        return DataLoader(self.data, batch_size=self.batch_size)

    train_dataloader = val_dataloader = test_dataloader = predict_dataloader = _loader


class RecordSeenFiles(L.Callback):
    """Test helper: writes ``<out>/rank<r>.json`` with the image paths this rank trained on and a checksum
    of its final weights (the DDP test compares ranks)."""

    def __init__(self, out: str) -> None:
        self.out, self.seen = out, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for value in batch.values():
            self.seen += list(value.get("image_path", []))

    def on_train_end(self, trainer, pl_module) -> None:
        import json
        from pathlib import Path

        weights = [p.detach().double() for p in pl_module.parameters()]
        record = {
            "seen": self.seen,
            "weight_sum": float(sum(w.sum() for w in weights)),
            "weight_abs_sum": float(sum(w.abs().sum() for w in weights)),
            "world_size": trainer.world_size,
        }
        path = Path(self.out) / f"rank{trainer.global_rank}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
