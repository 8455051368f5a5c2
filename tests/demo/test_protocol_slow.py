"""The demo protocol for real at the small size (``mtp demo --size small``, minutes on 2 cores; pytest -m slow).

Same stages as ``make demo``: synthetic data, the three-task pretraining through ``mtp fit``, the official encoder
export, loading it (and the reused decoder) into the fine-tuning tasks, every arm over three seeds, the report.
It asserts the direction of the effect over seeds, not the 2σ verdict (the small size has too few steps for it).
"""

import json

import pytest

from mtp.cli import main as mtp_main


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_small_protocol_shows_the_mtp_encoder_ahead_of_scratch(tmp_path, capsys):
    out = tmp_path / "demo"
    code = mtp_main(["demo", "--size", "small", "--out", str(out)])
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert code in (0, 1) and (code == 0) is results["verdict"]["passed"]
    assert (out / "pretrain" / "official" / "last_vit_b_rvsa_ss_is_rd_pretrn_model_encoder.pth").is_file()
    assert (out / "report.html").stat().st_size > 10_000 and "report.html" in printed
    for task in results["tasks"]:
        for arm in task["arms"]:
            assert len(arm["values"]) == 3 and all(0.0 <= v <= 1.0 for v in arm["values"])
            assert all(len(c["step"]) >= 2 for c in arm["curves"]), "the learning curve has points"
        for row in task["grid"]["rows"]:
            assert all((out / path).is_file() for path in row)
    segmentation = next(t for t in results["tasks"] if t["name"] == "segmentation")
    gain = next(g for g in segmentation["gains"] if g["arm"] == "mtp")
    assert gain["mean"] > 0, f"the MTP encoder did not beat scratch on average: {gain['per_seed']}"
    # the second run re-uses the pretraining (same config, data and code)
    assert mtp_main(["demo", "--size", "small", "--out", str(out), "--seeds", "0", "1"]) in (0, 1)
    assert json.loads((out / "results.json").read_text())["pretraining"]["cached"] is True
