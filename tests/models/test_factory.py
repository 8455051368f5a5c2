"""create_model / list_models: every name builds with the official parameter names, forward contracts per family,
catalogue weights, clear errors, and a newly registered backbone (InternImage-like) yielding its own names."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from torch import nn

from mtp.models import create_model, factory, list_architectures, list_backbones, list_models
from mtp.models.backbones import _BACKBONES
from mtp.models.detectors.horizontal.keymap import mmdet_rcnn_key, mmdet_retinanet_key
from mtp.models.detectors.oriented_rcnn.model import official_to_ours
from mtp.models.detectors.oriented_rcnn.roi_head import RCNNConfig
from mtp.models.detectors.oriented_rcnn.rpn import RPNConfig
from mtp.models.factory import UnknownModelError
from mtp.models.pretraining import ours_to_official
from mtp.models.pretraining.decoders import ProposalBudget
from mtp.weights import WeightsNotFoundError, expected_path
from tests.official_keys import official_keys

TINY = dict(embed_dim=32, depth=4, num_heads=2, interval=2, out_indices=(0, 1, 2, 3), drop_path_rate=0.0)
ARCHITECTURES = ["changenet", "classifier", "faster_rcnn", "mask_rcnn", "mtp", "oriented_rcnn", "retinanet", "upernet"]
#: num_classes of the official file whose head keys each architecture is compared with (None: default).
OFFICIAL_CLASSES = {"upernet": 7, "classifier": 10, "changenet": None, "faster_rcnn": 20, "mask_rcnn": 20,
                    "retinanet": 60, "oriented_rcnn": 20, "mtp": None}  # fmt: skip
#: Backbone tensors of the official segmentation copy (tests/data/official_keys) each copy lacks.
GLOBAL_TABLES, FPN = r"blocks\.\d+\.attn\.full_attn_rel_pos_[hw]", r"fpn[12]\..*"
COPY_LACKS = {
    "upernet": None,
    "mtp": None,
    "faster_rcnn": GLOBAL_TABLES,
    "mask_rcnn": GLOBAL_TABLES,
    "retinanet": GLOBAL_TABLES,
    "oriented_rcnn": GLOBAL_TABLES,
    "classifier": FPN,
    "changenet": FPN,
}


def test_names_are_every_architecture_times_every_backbone():
    assert list_architectures() == ARCHITECTURES
    assert list_models() == sorted(f"{a}_{b}" for a in ARCHITECTURES for b in list_backbones())
    assert len(list_models("*_vit_*")) == 16 and len(list_models("*_internimage_xl")) == 8
    assert list_models("*rcnn_vit_l*") == ["faster_rcnn_vit_l_rvsa", "mask_rcnn_vit_l_rvsa", "oriented_rcnn_vit_l_rvsa"]
    assert list_models(task="segmentation") == [f"upernet_{b}" for b in list_backbones()]


def _backbone_path(model: nn.Module) -> str:
    for path in ("backbone.body", "backbone", "encoder"):
        try:
            model.get_submodule(path)
            return path
        except AttributeError:
            continue
    raise AssertionError(f"no backbone in {type(model).__name__}")


def _official_head_keys(arch: str, model: nn.Module) -> tuple[set[str], set[str]]:
    """(official head keys mapped to our names, our head keys) for the architectures with an official key list."""
    ours = {k for k in model.state_dict() if not k.startswith(_backbone_path(model) + ".")}
    if arch == "upernet":
        return set(official_keys("upernet_loveda_vit_b")), ours
    if arch == "changenet":
        return set(official_keys("unet_cd_vit_b")), ours
    if arch == "faster_rcnn":
        return {mmdet_rcnn_key(k) for k in official_keys("faster_rcnn_dior_vit_b")}, ours
    if arch == "mask_rcnn":
        keys = [*official_keys("faster_rcnn_dior_vit_b"), *official_keys("mask_rcnn_mask_branch")]
        return {mmdet_rcnn_key(k) for k in keys}, ours
    if arch == "retinanet":
        return {mmdet_retinanet_key(k) for k in official_keys("retinanet_xview_vit_b")}, ours
    if arch == "oriented_rcnn":
        return {official_to_ours(k) for k in official_keys("oriented_rcnn_diorr_vit_b")}, ours
    if arch == "mtp":
        return set(official_keys("mtp_whole_model_decoders_vit_b")), {ours_to_official(k) for k in ours}
    return {"head.fc.weight", "head.fc.bias"}, ours  # classifier: mmpretrain LinearClsHead


@pytest.mark.parametrize("name", list_models("*_vit_*_rvsa"))
def test_every_name_builds_on_meta_with_the_official_names(name):
    arch = name.split("_vit_")[0]
    size = name.split("_vit_")[1][0]
    kwargs = {} if OFFICIAL_CLASSES[arch] is None else {"num_classes": OFFICIAL_CLASSES[arch]}
    with torch.device("meta"):
        model = create_model(name, img_size=512, **kwargs)
    official = official_keys(f"vit_{size}_rvsa_512_keys")
    ours = {k: tuple(v.shape) for k, v in model.get_submodule(_backbone_path(model)).state_dict().items()}
    assert all(official[k] == shape for k, shape in ours.items()), name
    lacking = {k for k in official if k not in ours}
    pattern = COPY_LACKS[arch]
    assert lacking == ({k for k in official if re.fullmatch(pattern, k)} if pattern else set()), name
    expected_heads, our_heads = _official_head_keys(arch, model)
    assert our_heads == expected_heads, name


@pytest.mark.parametrize("name", list_models("*_internimage_xl"))
def test_every_internimage_name_builds_on_meta_with_the_official_backbone(name):
    arch = name.removesuffix("_internimage_xl")
    kwargs = {} if OFFICIAL_CLASSES[arch] is None else {"num_classes": OFFICIAL_CLASSES[arch]}
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    ours = {k: tuple(v.shape) for k, v in model.get_submodule(_backbone_path(model)).state_dict().items()}
    assert ours == official_keys("internimage_xl_keys"), name  # no ViT task-copy setting reached it
    inputs = {
        "upernet": ("decode_head.lateral_convs.0.conv.weight", 192),
        "classifier": ("head.fc.weight", 1536),
        "changenet": ("decode_head.blocks.0.conv1.0.weight", 1536 + 768),
    }  # the heads see the 4 XL levels
    if arch in inputs:
        key, channels = inputs[arch]
        assert model.state_dict()[key].shape[1] == channels, name


def tiny(name: str, **kwargs) -> nn.Module:
    return create_model(name, img_size=64, **{**TINY, **kwargs})


def test_dense_families_return_logits_in_both_modes():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    seg = tiny("upernet_vit_b_rvsa", num_classes=5, channels=16)
    cls = tiny("classifier_vit_b_rvsa", num_classes=4)
    cd = tiny("changenet_vit_b_rvsa", decoder_channels=(16, 8, 8, 8))
    for mode in (True, False):
        for model in (seg, cls, cd):
            model.train(mode)
        assert seg(x).shape == (2, 5, 16, 16)
        assert cls(x).shape == (2, 4)
        assert cd(torch.cat([x, x.flip(0)], dim=1)).shape == (2, 2, 128, 128)  # ViT taps at stride 16 -> 2x input


def _boxes() -> torch.Tensor:
    return torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 10.0, 60.0, 28.0]])


@pytest.mark.parametrize("arch", ["faster_rcnn", "mask_rcnn", "retinanet"])
def test_torchvision_detectors_losses_then_predictions(arch):
    torch.manual_seed(0)
    model = tiny(f"{arch}_vit_b_rvsa", num_classes=3, fpn_channels=32)
    images = [torch.randn(3, 64, 64), torch.randn(3, 64, 48)]
    first = 1 if arch != "retinanet" else 0  # torchvision R-CNN: 0 is background
    targets = [{"boxes": _boxes(), "labels": torch.tensor([first, first + 2])} for _ in images]
    if arch == "mask_rcnn":
        for t, img in zip(targets, images, strict=True):
            t["masks"] = torch.zeros(2, *img.shape[1:], dtype=torch.uint8)
            t["masks"][:, 10:20, 10:20] = 1
            t["boxes"] = t["boxes"].clamp(max=img.shape[2] - 1)
    losses = model.train()(images, targets)
    expected = {"classification", "bbox_regression"} if arch == "retinanet" else {
        "loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} | (
        {"loss_mask"} if arch == "mask_rcnn" else set())  # fmt: skip
    assert set(losses) == expected and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    with torch.no_grad():
        preds = model.eval()(images)
    assert len(preds) == 2
    for pred, img in zip(preds, images, strict=True):
        assert {"boxes", "labels", "scores"} <= set(pred) and pred["boxes"].shape[1:] == (4,)
        assert (pred["labels"] >= first).all() and (pred["labels"] < 3 + first).all()
        if arch == "mask_rcnn":
            assert pred["masks"].shape[1:] == (1, *img.shape[1:])


def test_oriented_rcnn_losses_then_rotated_predictions():
    torch.manual_seed(0)
    small = {"nms_pre": 200, "max_per_img": 200}  # CPU-sized proposal counts (official 2000)
    model = tiny("oriented_rcnn_vit_b_rvsa", num_classes=3, fpn_channels=32, rpn_cfg=RPNConfig(**small),
                 rcnn_cfg=RCNNConfig(num_samples=64))  # fmt: skip
    images, hw = torch.randn(2, 3, 64, 64), [(64, 64), (60, 50)]
    rboxes = [torch.tensor([[30.0, 30.0, 24.0, 10.0, 0.3]]), torch.tensor([[20.0, 25.0, 16.0, 8.0, -0.5]])]
    losses = model.train()(images, hw, rboxes, [torch.tensor([0]), torch.tensor([2])])
    assert {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox"} <= set(losses)
    sum(v for k, v in losses.items() if k.startswith("loss")).backward()
    with torch.no_grad():
        preds = model.eval()(images, hw)
    assert len(preds) == 2 and all(p["rboxes"].shape[1:] == (5,) and set(p) == {"rboxes", "labels", "scores"}
                                   for p in preds)  # fmt: skip


def test_mtp_losses_per_dataset_and_task_then_predictions():
    from tests.models.pretraining.conftest import make_batch

    torch.manual_seed(0)
    classes = {"sior": 3, "fast": 2}
    model = tiny("mtp_vit_b_rvsa", num_classes=classes, datasets=("sior", "fast"), channels=32,
                 budget=ProposalBudget(proposals=100, rcnn_samples=32))  # fmt: skip
    batches = {d: make_batch(c, seed=i) for i, (d, c) in enumerate(classes.items())}
    losses = model.train()(batches)
    assert set(losses) == {f"{d}/{t}" for d in classes for t in ("ss", "is", "rd")}
    with torch.no_grad():
        preds = model.eval()(batches)
    assert set(preds) == set(losses)
    assert preds["sior/ss"].shape[:2] == (len(batches["sior"]["image"]), 3 + 1)  # + background
    assert {"boxes", "labels", "scores", "masks"} <= set(preds["fast/is"][0])
    assert (preds["fast/is"][0]["labels"] < 2).all() and set(preds["sior/rd"][0]) == {"rboxes", "labels", "scores"}


@pytest.mark.parametrize(
    "name,fragments",
    [
        ("upernet_vit_b_rsva", ["backbone 'vit_b_rsva' is not registered", "upernet_vit_b_rvsa"]),
        ("uppernet_vit_b_rvsa", ["unknown model 'uppernet_vit_b_rvsa'", "did you mean upernet_vit_b_rvsa"]),
        ("upernet", ["is an architecture", "upernet_vit_b_rvsa"]),
        ("resnet50", ["unknown model 'resnet50'", "architectures: changenet"]),
    ],
)
def test_unknown_names_fail_listing_close_matches(name, fragments):
    with pytest.raises(UnknownModelError) as err:
        create_model(name, num_classes=3)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_argument_errors_are_clear():
    with pytest.raises(TypeError, match="needs num_classes"):
        create_model("upernet_vit_b_rvsa")
    with pytest.raises(ValueError, match=r"backbone 'vit_b_rvsa'.*backbone='vit_l_rvsa'"):
        create_model("upernet_vit_b_rvsa", backbone="vit_l_rvsa", num_classes=3)
    with torch.device("meta"):
        assert isinstance(create_model("upernet", backbone="vit_l_rvsa", num_classes=3), nn.Module)


# ----------------------------------------------------------------------------- catalogue weights
@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MTP_HOME", str(tmp_path / "mtp_home"))
    return tmp_path / "mtp_home"


def _save(state: dict, path, key: str = "state_dict") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({key: state, "meta": {"note": "test"}}, path)


def test_pretrained_catalogue_names_load_the_backbone_or_the_whole_model(home):
    torch.manual_seed(0)
    source = tiny("upernet_vit_b_rvsa", num_classes=7, channels=16)
    _save(dict(source.backbone.state_dict()), expected_path("mtp:vit_b_rvsa"))
    _save(source.state_dict(), expected_path("loveda:upernet_vit_b_rvsa_mae_mtp"))
    for pretrained in ("mtp:vit_b_rvsa", True):
        model = tiny("upernet_vit_b_rvsa", num_classes=7, channels=16, pretrained=pretrained)
        torch.testing.assert_close(model.backbone.state_dict(), source.backbone.state_dict())
        assert not torch.equal(model.decode_head.conv_seg.weight, source.decode_head.conv_seg.weight)
    # A fine-tuned file of this very model loads whole, with its num_classes / img_size as defaults.
    whole = create_model("upernet_vit_b_rvsa", pretrained="loveda:upernet_vit_b_rvsa_mae_mtp", channels=16,
                         img_size=64, **TINY)  # fmt: skip
    torch.testing.assert_close(whole.state_dict(), source.state_dict())
    assert whole.num_classes == 7
    # ... and as backbone weights of another architecture (its backbone.* part).
    cls = tiny("classifier_vit_b_rvsa", num_classes=3, pretrained="loveda:upernet_vit_b_rvsa_mae_mtp")
    torch.testing.assert_close(cls.backbone.blocks[0].attn.qkv.weight, source.backbone.blocks[0].attn.qkv.weight)
    with pytest.raises(ValueError, match="holds vit_b_rvsa weights; model upernet_vit_l_rvsa"):
        create_model("upernet_vit_l_rvsa", num_classes=7, pretrained="mtp:vit_b_rvsa")
    reloaded = tiny("upernet_vit_b_rvsa", num_classes=7, channels=16, checkpoint_path=expected_path(
        "loveda:upernet_vit_b_rvsa_mae_mtp"))  # fmt: skip
    torch.testing.assert_close(reloaded.state_dict(), source.state_dict())


def test_a_whole_file_makes_pretrained_unread(home, tmp_path):
    """checkpoint_path sets every weight, so the backbone weights named by pretrained are not read: a config that
    names (absent) pretrained weights tests any whole file; a catalogue whole-file name yields too."""
    torch.manual_seed(0)
    source = tiny("upernet_vit_b_rvsa", num_classes=7, channels=16)
    whole = tmp_path / "finetuned.pth"
    _save(source.state_dict(), whole)
    for pretrained in (tmp_path / "absent_encoder.pth", "mtp:vit_b_rvsa", "loveda:upernet_vit_b_rvsa_mae_mtp"):
        model = tiny("upernet_vit_b_rvsa", num_classes=7, channels=16, pretrained=pretrained, checkpoint_path=whole)
        torch.testing.assert_close(model.state_dict(), source.state_dict())
    with pytest.raises(WeightsNotFoundError):  # without checkpoint_path the same name is needed
        tiny("upernet_vit_b_rvsa", num_classes=7, channels=16, pretrained="mtp:vit_b_rvsa")


def test_missing_catalogue_file_fails_before_building_with_what_to_download(home, monkeypatch):
    built = []
    spec = factory._ARCHITECTURES["oriented_rcnn"]
    monkeypatch.setitem(factory._ARCHITECTURES, "oriented_rcnn", dataclasses.replace(spec, build=built.append))
    with pytest.raises(WeightsNotFoundError) as err:
        create_model("oriented_rcnn_vit_l_rvsa", num_classes=20, pretrained="diorr:oriented_rcnn_vit_l_rvsa_mae_mtp")
    message = str(err.value)
    assert str(home / "oriented_rcnn_rvsa_l_800_mae_mtp_diorr" / "epoch_12.pth") in message
    assert "https://pan.baidu.com/s/1K7yCPmr1kGd--QRWnaEjMg?pwd=1o98" in message
    assert "Rotated Object Detection" in message
    assert built == []


# ----------------------------------------------------------------------------- a newly registered backbone
class FourMapCNN(nn.Module):
    """Stand-in for InternImage-XL: 4 NCHW maps at strides 4, 8, 16, 32 with growing channels."""

    def __init__(self, img_size: int = 224, drop_path_rate: float = 0.0, width: int = 8) -> None:
        super().__init__()
        self.out_channels = [width, 2 * width, 4 * width, 8 * width]
        self.strides = [4, 8, 16, 32]
        chans = [3, *self.out_channels]
        self.stages = nn.ModuleList(
            nn.Conv2d(chans[i], chans[i + 1], 4 if i == 0 else 2, 4 if i == 0 else 2) for i in range(4)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return tuple(out)


def internimage_xl(img_size: int = 224, **overrides) -> FourMapCNN:
    return FourMapCNN(img_size=img_size, **overrides)


@pytest.fixture
def with_internimage(monkeypatch):
    monkeypatch.setitem(_BACKBONES, "internimage_xl", internimage_xl)
    return "internimage_xl"


def test_a_registered_backbone_yields_every_architecture(with_internimage):
    assert "internimage_xl" in list_backbones()
    names = list_models("*_internimage_xl")
    assert names == sorted(f"{a}_internimage_xl" for a in ARCHITECTURES)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    # No ViT copy setting (pyramid, global_rel_pos) reaches this backbone: its builder would reject them.
    assert create_model("upernet_internimage_xl", num_classes=3, channels=16).eval()(x).shape == (1, 3, 16, 16)
    assert create_model("classifier_internimage_xl", num_classes=4)(x).shape == (1, 4)
    cd = create_model("changenet_internimage_xl", decoder_channels=(16, 8, 8, 8)).eval()
    assert cd(torch.cat([x, x], 1)).shape == (1, 2, 64, 64)  # stride-4..32 maps -> full resolution
    det = create_model("oriented_rcnn_internimage_xl", num_classes=2, fpn_channels=16,
                       rpn_cfg=RPNConfig(nms_pre=100, max_per_img=100)).eval()  # fmt: skip
    with torch.no_grad():
        assert set(det(x, [(64, 64)])[0]) == {"rboxes", "labels", "scores"}
    with torch.device("meta"):
        for name in names:
            create_model(name, **({} if name.startswith(("changenet", "mtp")) else {"num_classes": 3}))


def test_catalogue_names_of_a_registered_backbone_resolve(with_internimage, home):
    torch.manual_seed(0)
    source = create_model("upernet_internimage_xl", num_classes=7, channels=16)
    _save(source.state_dict(), expected_path("loveda:upernet_internimage_xl_imp_mtp"))
    _save(dict(source.backbone.state_dict()), expected_path("mtp:internimage_xl"))
    model = create_model("upernet_internimage_xl", pretrained="loveda:upernet_internimage_xl_imp_mtp", channels=16)
    torch.testing.assert_close(model.state_dict(), source.state_dict())
    cls = create_model("classifier_internimage_xl", num_classes=3, pretrained=True)
    torch.testing.assert_close(cls.backbone.state_dict(), source.backbone.state_dict())
