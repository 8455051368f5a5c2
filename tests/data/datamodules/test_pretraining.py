"""PretrainingDataModule: official batch modes, the min_size CombinedLoader, batch keys / shapes / dtypes for train and
validation, worker processes, seeding, and per-dataset DistributedSamplers under 2-process DDP (gloo)."""

from __future__ import annotations

import json

import lightning
import pytest
import torch
from torch.utils.data import DistributedSampler

from mtp.data.datamodules.pretraining import PretrainingDataModule, per_dataset_batch_sizes
from mtp.data.synthetic import write_samrs

NAMES = ("sota", "sior", "fast")
N_TRAIN = {"sota": 3, "sior": 5, "fast": 4}
LIST_KEYS = ("boxes", "labels", "masks", "rboxes", "rlabels", "image_id", "image_path", "scale_factor", "img_hw",
             "ori_hw")  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("samrs_dm")
    for k, v in enumerate(NAMES):
        write_samrs(root, variant=v, seed=k, n_train=N_TRAIN[v], n_val=2, size=96)
    return root


def test_batch_modes():
    assert per_dataset_batch_sizes(3, NAMES, "avg") == {"sota": 1, "sior": 1, "fast": 1}
    assert per_dataset_batch_sizes(8, NAMES, "avg") == {"sota": 2, "sior": 2, "fast": 2}
    assert per_dataset_batch_sizes(16, NAMES, "ratio") == {"sota": 2, "sior": 2, "fast": 10}
    assert per_dataset_batch_sizes(8, ("sior", "fast"), "ratio") == {"sior": 1, "fast": 6}
    with pytest.raises(ValueError, match=r"gives 0 images per step to \['sota', 'sior'\]"):
        per_dataset_batch_sizes(3, NAMES, "ratio")
    with pytest.raises(ValueError, match="batch_size_val=2"):
        PretrainingDataModule("x", batch_size=3, batch_size_val=2)
    with pytest.raises(ValueError, match="batch_mode"):
        per_dataset_batch_sizes(3, NAMES, "sum")
    with pytest.raises(ValueError, match="distinct names"):
        PretrainingDataModule("x", datasets=("sota", "dota"))


def test_class_lists_without_data():
    dm = PretrainingDataModule("nowhere", datasets=("fast", "sota"), batch_size=2, batch_size_val=2)
    assert dm.dataset_names == ("fast", "sota") and list(dm.class_lists()) == ["fast", "sota"]
    assert dm.num_classes == {"fast": 37, "sota": 18}
    assert dm.semantic_class_lists()["sota"][:2] == ("background", "large-vehicle")


def test_train_batches(root):
    dm = PretrainingDataModule(str(root), image_size=64, batch_size=3, batch_size_val=3, num_workers=0, seed=1)
    loader = dm.train_dataloader()
    iterator = iter(loader)
    assert len(loader) == min(N_TRAIN.values())  # the official zip: the shortest loader ends the epoch
    steps = list(iterator)
    assert len(steps) == 3
    for batch, _, _ in steps:
        assert list(batch) == list(NAMES)
        for name, b in batch.items():
            assert b["dataset"] == name and b["image"].shape == (1, 3, 64, 64) and b["image"].dtype == torch.float32
            assert b["semantic"].shape == (1, 64, 64) and b["semantic"].dtype == torch.int64
            assert int(b["semantic"].max()) == 255 or int(b["semantic"].max()) <= dm.num_classes[name]
            for key in LIST_KEYS:
                assert len(b[key]) == 1, key
            n = len(b["labels"][0])
            assert b["boxes"][0].shape == (n, 4) and b["masks"][0].shape == (n, 64, 64)
            assert b["masks"][0].dtype == torch.uint8 and b["labels"][0].dtype == torch.int64
            assert b["rboxes"][0].shape == (len(b["rlabels"][0]), 5) and b["rboxes"][0].dtype == torch.float32
            assert b["ori_hw"] == [(96, 96)]
    bigger = PretrainingDataModule(str(root), image_size=64, batch_size=6, batch_size_val=3)
    it = iter(bigger.train_dataloader())
    assert len(it) == 1 and [b["image"].shape[0] for b in next(it)[0].values()] == [2, 2, 2]  # drop_last


def test_val_batches(root):
    dm = PretrainingDataModule(str(root), image_size=64, batch_size=3, batch_size_val=6)
    loaders = dm.val_dataloader()
    assert len(loaders) == 3
    for name, loader in zip(NAMES, loaders, strict=True):
        batches = list(loader)
        assert len(batches) == 1
        b = batches[0]
        assert b["dataset"] == name and b["image"].shape == (2, 3, 64, 64)
        assert isinstance(b["semantic"], list) and b["semantic"][0].shape == (96, 96)
        assert b["semantic"][0].dtype == torch.int64 and b["scale_factor"][0] == pytest.approx((2 / 3, 2 / 3))
        assert all(m.shape[1:] == (96, 96) for m in b["masks"])


def test_seeded_and_workers(root):
    def first_images(seed, workers):
        dm = PretrainingDataModule(str(root), datasets=("sior",), image_size=64, batch_size=2, batch_size_val=2,
                                   num_workers=workers, seed=seed, persistent_workers=False)  # fmt: skip
        return [(b["sior"]["image_id"], b["sior"]["image"]) for b, _, _ in dm.train_dataloader()]

    a, b, c = first_images(3, 0), first_images(3, 0), first_images(4, 0)
    assert [x[0] for x in a] == [x[0] for x in b] and all(torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert any(not torch.equal(x[1], y[1]) for x, y in zip(a, c, strict=True))
    w1, w2 = first_images(3, 1), first_images(3, 1)
    assert len(w1) == 2 and all(torch.equal(x[1], y[1]) for x, y in zip(w1, w2, strict=True))


class _Recorder(lightning.LightningModule):
    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.out_dir = out_dir
        self.seen: dict[str, list] = {}
        self.samplers: list[str] = []

    def on_train_start(self) -> None:
        self.samplers = [type(dl.sampler).__name__ for dl in self.trainer.train_dataloader.values()]

    def training_step(self, batch, batch_idx):
        for name, b in batch.items():
            self.seen.setdefault(name, []).extend(b["image_id"])
        return self.w * sum(b["image"].mean() for b in batch.values())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_train_end(self) -> None:
        path = f"{self.out_dir}/rank{self.global_rank}.json"
        with open(path, "w") as f:
            json.dump({"seen": self.seen, "samplers": self.samplers}, f)


@pytest.mark.parametrize("lightning_sampler", [True, False])
def test_ddp_ranks_get_disjoint_samples(root, tmp_path, lightning_sampler):
    dm = PretrainingDataModule(str(root), image_size=32, batch_size=3, batch_size_val=3, num_workers=0)
    trainer = lightning.Trainer(accelerator="cpu", devices=2, strategy="ddp_fork", max_epochs=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                limit_val_batches=0, use_distributed_sampler=lightning_sampler)  # fmt: skip
    trainer.fit(_Recorder(str(tmp_path)), datamodule=dm)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["samplers"] == r1["samplers"] == [DistributedSampler.__name__] * 3  # one per dataset loader
    # min_size epoch = sota's share: 3 images -> 2 per rank (Lightning pads) or 1 (our sampler drops the rest)
    steps = 2 if lightning_sampler else 1
    seen = {name: (r0["seen"][name], r1["seen"][name]) for name in NAMES}
    assert all(len(a) == len(b) == steps for a, b in seen.values())
    assert not set(seen["sior"][0]) & set(seen["sior"][1])  # different samples on the two ranks
    assert not set(seen["fast"][0]) & set(seen["fast"][1])
    if lightning_sampler:
        assert sorted(seen["fast"][0] + seen["fast"][1]) == [0, 1, 2, 3]  # 4 images split exactly
