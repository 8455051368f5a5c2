"""The mtp command line: version, registry listing, tools, LightningCLI subcommands."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import mtp
from mtp.cli import main
from tests.conftest import REPO


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"mtp {mtp.__version__}"


def test_list_backbones(capsys):
    assert main(["list-backbones"]) == 0
    assert capsys.readouterr().out.split() == ["internimage_xl", "vit_b_rvsa", "vit_l_rvsa"]


def test_backbone_shapes_tool_prints_every_level(capsys):
    args = ["tool", "backbone-shapes", "--img-size", "64", "--input-size", "64", "96"]
    args += ["--set", "depth=4", "--set", "embed_dim=32", "--set", "num_heads=2", "--set", "out_indices=[0,1,2,3]"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for shape in ["(1, 32, 16, 24)", "(1, 32, 8, 12)", "(1, 32, 4, 6)", "(1, 32, 2, 3)"]:
        assert shape in out


def test_backbone_shapes_tool_loads_a_checkpoint(tmp_path, capsys):
    from mtp.models import create_backbone

    model = create_backbone("vit_b_rvsa", img_size=64, depth=4, embed_dim=32, num_heads=2, out_indices=(0, 1, 2, 3))
    torch.save({"state_dict": {"backbone." + k: v for k, v in model.state_dict().items()}}, tmp_path / "ft.pth")
    args = ["tool", "backbone-shapes", "--img-size", "64", "--pretrained", str(tmp_path / "ft.pth")]
    args += ["--set", "depth=4", "--set", "embed_dim=32", "--set", "num_heads=2", "--set", "out_indices=[0,1,2,3]"]
    assert main(args) == 0


def test_unknown_tool_and_bad_override_exit_nonzero(capsys):
    assert main(["tool", "no-such-tool"]) == 2
    assert "unknown tool 'no-such-tool'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tool", "backbone-shapes", "--set", "depth"])


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_tool_help_lists_every_tool(capsys, flag):
    from mtp.cli.tools import TOOLS

    assert main(["tool", flag]) == 0 and main(["tool"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name}: " in out for name in TOOLS)


def test_every_subcommand_help_works(capsys):
    """``mtp --help``, ``mtp tool NAME --help`` for every tool and ``mtp fit|validate|test|predict --help``."""
    from mtp.cli.lightning import SUBCOMMANDS
    from mtp.cli.tools import TOOLS

    for argv in (["--help"], *(["tool", name, "--help"] for name in TOOLS), *([sub, "--help"] for sub in SUBCOMMANDS)):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0, argv
        assert "usage:" in capsys.readouterr().out, argv


def test_fit_test_predict_through_lightning_cli(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"""
seed_everything: 0
trainer:
  max_steps: 2
  limit_val_batches: 1
  accelerator: cpu
  devices: 1
  logger: false
  enable_progress_bar: false
  default_root_dir: {tmp_path}
model:
  class_path: tests.lightning_fixtures.BackboneRegression
  init_args: {{img_size: 32}}
data:
  class_path: tests.lightning_fixtures.RandomImages
  init_args: {{img_size: 32}}
"""
    )
    env = {"PYTHONPATH": f"{REPO / 'src'}:{REPO}", "PATH": "/usr/bin:/bin"}
    for sub in ("fit", "test", "predict"):
        done = subprocess.run(
            [sys.executable, "-m", "mtp.cli", sub, "--config", str(config)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    assert list(tmp_path.rglob("*.ckpt")), "fit wrote no checkpoint"
