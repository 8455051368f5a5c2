"""Multi-task pretraining with InternImage: the tiny config (activation checkpointing, the official InternImage
layer decay) trains and validates on synthetic SAMRS through the CLI and writes the official files under the
official InternImage names; the encoder file initialises fine-tuning, the whole file loads back and feeds
`mtp tool reuse-decoder`; checkpointing changes no loss or gradient."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mtp.cli import main
from mtp.data.synthetic import write_samrs
from mtp.models import create_backbone, create_model
from mtp.models.checkpoint_reader import read_checkpoint
from mtp.models.detectors.oriented_rcnn.model import load_oriented_rcnn_checkpoint
from mtp.models.pretraining import total_loss
from mtp.models.segmentor import load_segmentor_checkpoint
from mtp.tasks.pretraining import MultiTaskPretrainingTask
from tests.conftest import REPO
from tests.models.pretraining.conftest import make_batch
from tests.official_keys import official_keys
from tests.tasks.internimage import TINY

CONFIG = REPO / "configs" / "pretraining" / "tiny-samrs-internimage-cpu.yaml"
CHANNELS = 32


@pytest.fixture(scope="module")
def samrs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("samrs")
    for variant in ("sota", "sior", "fast"):
        write_samrs(root, variant=variant, n_train=3, n_val=1, size=96, seed=1)
    return root


def test_tiny_internimage_pretrains_and_writes_the_official_files(samrs, tmp_path):
    out = tmp_path / "run"
    args = [
        "--config", str(CONFIG),
        "--data.root", str(samrs), "--data.image_size", "64", "--data.batch_size", "3", "--data.num_workers", "0",
        "--model.img_size", "64", "--model.channels", str(CHANNELS), "--model.output_dir", str(out / "val"),
        "--trainer.default_root_dir", str(out), "--trainer.max_steps", "2",
        "--trainer.limit_val_batches", "1", "--trainer.val_check_interval", "2", "--trainer.num_sanity_val_steps", "0",
        # an untrained detector keeps ~1/C of every class: few proposals keep the CPU rotated NMS quick
        "--model.budget", "{proposals: 40, rcnn_samples: 64}",
        "--trainer.callbacks", json.dumps([
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
             "init_args": {"dirpath": str(out / "checkpoints"), "save_last": True}},
            {"class_path": "mtp.tasks.pretraining_checkpoints.OfficialPretrainCheckpoints",
             "init_args": {"dirpath": str(out / "official"), "interval": 2}},
        ]),
        "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
    ]  # fmt: skip
    assert main(["fit", *args]) == 0
    metrics = json.loads((out / "val" / "metrics.json").read_text())
    assert {"sota", "sior", "fast", "mtp_average"} <= set(metrics) and "dota_mAP" in metrics["fast"]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["backbone_kwargs"]["use_checkpoint"] is True
    # The official InternImage layer decay (active in pretraining): L = sum(depths) + 2 = 7, patch_embed id 0.
    groups = ckpt["optimizer_states"][0]["param_groups"]
    scale = {g["group_name"]: g["lr_scale"] for g in groups}
    assert scale["layer_0_decay"] == pytest.approx(0.94**6) and scale["layer_6_decay"] == 1.0
    # Official files, named as main_pretrain.py names them for --backbone internimage_xl.
    official = out / "official"
    assert sorted(p.name for p in official.iterdir()) == [
        f"{p}_internimage_xl_ss_is_rd_pretrn_model{s}.pth" for p in ("Iter_2", "last") for s in ("", "_encoder")
    ]
    whole_file = official / "last_internimage_xl_ss_is_rd_pretrn_model.pth"
    encoder_file = official / "last_internimage_xl_ss_is_rd_pretrn_model_encoder.pth"
    whole = read_checkpoint(whole_file)["state_dict"]
    decoders = {k for k in whole if not k.startswith("encoder.")}
    assert decoders == set(official_keys("mtp_whole_model_decoders_vit_b"))  # the official decoder names
    encoder = read_checkpoint(encoder_file)["state_dict"]
    assert list(encoder) == list(create_backbone("internimage_xl", **TINY).state_dict())  # the official order
    assert set(encoder) <= set(official_keys("internimage_xl_keys"))  # the official names (a shallower XL)
    assert {f"encoder.{k}" for k in encoder} == set(whole) - decoders
    # The encoder file initialises a fine-tuning backbone; the whole file restarts pretraining (load_from).
    net = create_backbone("internimage_xl", pretrained=encoder_file, **TINY)
    torch.testing.assert_close(net.state_dict(), encoder, rtol=0, atol=0)
    task = MultiTaskPretrainingTask(backbone="internimage_xl", img_size=64, channels=CHANNELS, backbone_kwargs=TINY,
                                    load_from=str(whole_file))  # fmt: skip
    assert torch.equal(task.model.rotdetroiboxhead_fc_cls3.weight, whole["rotdetroiboxhead_fc_cls3.weight"])
    # Decoder reuse on the InternImage whole-model file: Oriented R-CNN (strict: every tensor used) and UperNet.
    rd = tmp_path / "rd.pth"
    assert main(["tool", "reuse-decoder", "--ckpt", str(whole_file),
                 "--task", "rd", "--dataset", "sior", "--out", str(rd)]) == 0  # fmt: skip
    det = create_model("oriented_rcnn_internimage_xl", num_classes=20, fpn_channels=CHANNELS, backbone_kwargs=TINY)
    load_oriented_rcnn_checkpoint(det, rd)
    offsets = "levels.2.blocks.1.dcn.offset.weight"
    assert torch.equal(det.backbone.state_dict()[offsets], encoder[offsets])
    assert torch.equal(det.roi_head.bbox_head.fc_cls.weight, whole["rotdetroiboxhead_fc_cls2.weight"])
    ss = tmp_path / "ss.pth"
    assert main(["tool", "reuse-decoder", "--ckpt", str(whole_file),
                 "--task", "ss", "--dataset", "sota", "--out", str(ss)]) == 0  # fmt: skip
    seg = create_model("upernet_internimage_xl", num_classes=19, channels=CHANNELS, backbone_kwargs=TINY)
    load_segmentor_checkpoint(seg, ss)
    assert torch.equal(seg.decode_head.conv_seg.weight, whole["semseghead_1.1.weight"])


def test_activation_checkpointing_changes_no_loss_or_gradient():
    """The official with_cp=True: the same loss and encoder gradients as without checkpointing (train mode)."""
    counts = {"sior": 4}
    batch = {"sior": make_batch(4, batch=2, size=64, seed=2)}
    results = []
    for use_checkpoint in (False, True):
        torch.manual_seed(0)
        model = create_model("mtp_internimage_xl", img_size=64, datasets=["sior"], num_classes=counts, tasks=["ss"],
                             channels=CHANNELS, backbone_kwargs={**TINY, "use_checkpoint": use_checkpoint})  # fmt: skip
        assert model.encoder.use_checkpoint is use_checkpoint
        model.train()
        loss = total_loss(model(batch))
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.encoder.named_parameters()}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_b, loss_a)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, msg=name)
