"""Multi-task pretraining through the CLI: fit, validation, official files, resume, DDP, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtp.cli import main
from mtp.data.synthetic import write_samrs
from mtp.models import create_backbone
from mtp.models.checkpoint_reader import read_checkpoint
from mtp.tasks.pretraining import MultiTaskPretrainingTask, NonFiniteLossError

ROOT = Path(__file__).parents[2]
CONFIGS = ROOT / "configs" / "pretraining"
TINY = dict(embed_dim=32, depth=4, num_heads=2, interval=2, out_indices=[0, 1, 2, 3], drop_path_rate=0.0)


@pytest.fixture(scope="module")
def samrs_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("samrs")
    for variant in ("sota", "sior", "fast"):
        write_samrs(root, variant=variant, n_train=4, n_val=1, size=96, seed=1)
    return root


def tiny_args(root: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        "--config", str(CONFIGS / "tiny-samrs-cpu.yaml"),
        "--data.root", str(root), "--data.image_size", "64", "--data.batch_size", "6", "--data.num_workers", "0",
        "--model.img_size", "64", "--model.channels", "32", "--model.backbone_kwargs", json.dumps(TINY),
        "--model.output_dir", str(out / "val"),
        "--trainer.default_root_dir", str(out), "--trainer.max_steps", str(steps),
        "--trainer.callbacks", json.dumps([
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
             "init_args": {"dirpath": str(out / "checkpoints"), "every_n_train_steps": 2, "save_last": True}},
            {"class_path": "mtp.tasks.pretraining_checkpoints.OfficialPretrainCheckpoints",
             "init_args": {"dirpath": str(out / "official"), "interval": 2}},
        ]),
        "--trainer.enable_progress_bar", "false", "--trainer.logger", "false", *extra,
    ]  # fmt: skip


def test_fit_validate_official_files_and_resume(samrs_root, tmp_path):
    out = tmp_path / "run"
    main(
        ["fit", *tiny_args(samrs_root, out, 2, "--trainer.limit_val_batches", "1", "--trainer.val_check_interval", "2")]
    )
    metrics = json.loads((out / "val" / "metrics.json").read_text())
    assert set(metrics) >= {"sota", "sior", "fast", "mtp_average"}
    assert {"mIoU", "bbox_mAP", "segm_mAP", "dota_mAP"} <= set(metrics["sior"])
    names = sorted(p.name for p in (out / "official").iterdir())
    assert names == [
        f"{p}_vit_b_rvsa_ss_is_rd_pretrn_model{s}.pth" for p in ("Iter_2", "last") for s in ("", "_encoder")
    ]
    whole = read_checkpoint(out / "official" / "last_vit_b_rvsa_ss_is_rd_pretrn_model.pth")
    assert set(whole) == {"epoch", "iteration", "state_dict", "optimizer", "scheduler", "loss_pretrain"}
    assert whole["iteration"] == 2 and len(whole["loss_pretrain"]) == 2
    assert "inssegdecoder.rpn_head.rpn_conv.weight" in whole["state_dict"]
    encoder = read_checkpoint(out / "official" / "last_vit_b_rvsa_ss_is_rd_pretrn_model_encoder.pth")["state_dict"]
    assert "patch_embed.proj.weight" in encoder and "norm.weight" in encoder
    # The encoder file is what fine-tuning takes as `pretrained` (other size: pos_embed / tables resized).
    net = create_backbone(
        "vit_b_rvsa",
        img_size=96,
        pretrained=out / "official" / "last_vit_b_rvsa_ss_is_rd_pretrn_model_encoder.pth",
        **TINY,
    )
    assert torch.equal(net.blocks[0].attn.qkv.weight, encoder["blocks.0.attn.qkv.weight"])
    # Resume: continues at step 2 with the restored optimiser / scheduler and loss history.
    main(["fit", *tiny_args(samrs_root, out, 4, "--trainer.limit_val_batches", "0"),
          "--ckpt_path", str(out / "checkpoints" / "last.ckpt")])  # fmt: skip
    resumed = read_checkpoint(out / "official" / "last_vit_b_rvsa_ss_is_rd_pretrn_model.pth")
    assert resumed["iteration"] == 4 and len(resumed["loss_pretrain"]) == 4
    assert resumed["loss_pretrain"][:2].tolist() == whole["loss_pretrain"].tolist()
    assert resumed["scheduler"]["last_epoch"] == 4
    # Training can start from a whole official-layout file (load_from).
    whole_file = str(out / "official" / "last_vit_b_rvsa_ss_is_rd_pretrn_model.pth")
    task = MultiTaskPretrainingTask(img_size=64, channels=32, backbone_kwargs=TINY, load_from=whole_file)
    assert torch.equal(task.model.rotdetroiboxhead_fc_cls3.weight.cpu(),
                       resumed["state_dict"]["rotdetroiboxhead_fc_cls3.weight"])  # fmt: skip


def test_a_nan_loss_names_the_iteration_files_and_checkpoint(samrs_root, monkeypatch):
    task = MultiTaskPretrainingTask(img_size=64, channels=32, backbone_kwargs=TINY, tasks=["ss"], datasets=["sior"])
    from tests.models.pretraining.conftest import make_batch

    batch = {"sior": make_batch(20, batch=1, size=64)}
    monkeypatch.setattr(task.model, "forward", lambda b: {"sior/ss": {"loss_ce": torch.tensor(float("nan"))}})
    with pytest.raises(NonFiniteLossError, match=r"global step 0 .*sior\/ss\.loss_ce.*img0_0\.png.*none written yet"):
        task.training_step(batch, 0)


@pytest.mark.parametrize("name", ["vit-b-rvsa-448-mae-samrs-mtp-three", "vit-l-rvsa-448-mae-samrs-mtp-three"])
def test_official_run_twins_parse(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(CONFIGS / f"{name}.yaml"), "--print_config"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    for expected in ("max_steps: 80000", "num_nodes: 8", "lr: 6.0e-05", "gradient_clip_val: 5.0", "batch_mode: avg",
                     "image_size: 448", "use_checkpoint: true", "sync_batchnorm: true", "interval: 5000"):  # fmt: skip
        assert expected in printed, expected


def test_two_process_ddp_sees_different_data_and_ends_with_identical_weights(samrs_root, tmp_path):
    """torchrun launches 2 CPU processes (gloo): the per-dataset DistributedSamplers split the data and DDP keeps
    the replicas equal."""
    out = tmp_path / "ddp"
    ddp = ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--model.joint_semantic_trunk", "true"]
    args = tiny_args(samrs_root, out, 2, "--trainer.limit_val_batches", "0", "--data.batch_size", "3", *ddp)
    args[args.index("--trainer.callbacks") + 1] = json.dumps(
        [{"class_path": "tests.lightning_fixtures.RecordSeenFiles", "init_args": {"out": str(out / "seen")}}]
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           "-m", "mtp.cli", "fit", *args]  # fmt: skip
    result = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((out / "seen" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == 2 * 3  # 2 steps x 1 image of each dataset
    assert not set(ranks[0]["seen"]) & set(ranks[1]["seen"])
    assert ranks[0]["weight_sum"] == ranks[1]["weight_sum"] and ranks[0]["weight_abs_sum"] == ranks[1]["weight_abs_sum"]
