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
