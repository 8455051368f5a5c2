"""The catalogue: every pretrained and fine-tuned file of the official MTP release, by a stable name.

Naming scheme ``<source>:<model>`` (like TorchGeo's ``ResNet50_Weights.SENTINEL2_...`` enums and timm's
``pretrained_cfg`` tags, as plain strings so they fit wherever a path fits):

* backbone files, ``<pretraining>:<backbone>`` — ``mae:vit_b_rvsa`` (MAE on MillionAID), ``imp:internimage_xl``
  (ImageNet-22k -> 1k), ``mtp:vit_b_rvsa`` (the MTP encoder: MAE / IMP then multi-task pretraining on SAMRS);
  load with ``create_backbone(backbone, pretrained=NAME)`` or as ``pretrained=`` of any ``create_model`` name
  with that backbone;
* the whole multi-task pretraining model, ``mtp-whole:<backbone>`` (encoder + the three task decoders);
  ``create_model("mtp_<backbone>", pretrained=NAME)``, or as backbone weights anywhere;
* fine-tuned models, ``<dataset>:<create_model name>_<pretraining route>`` — e.g.
  ``loveda:upernet_vit_b_rvsa_mae_mtp``, ``dior:faster_rcnn_internimage_xl_imp_mtp``; the part after the colon
  up to the route is the :func:`mtp.models.create_model` name the file loads into.

Sources: the ``Readme.md`` of ViTAE-Transformer/MTP (tables *Pretrained Models* and *Finetuned Models*), the
Remote-Sensing-RVSA README (MAE ViT-B) and the InternImage README (ImageNet InternImage-XL). The README links
folders, not files: fine-tuned files carry the name their official run wrote (``<work_dir>/<config>/epoch_N.pth``
or ``iter_80000.pth``, the names in the README's test commands and the official test logs), stored under a folder
named after the official config. No checksums are published: ``mtp weights verify`` records them on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

MTP_README = "https://github.com/ViTAE-Transformer/MTP"
_PRETRAINED_PAGES = (
    ("Baidu (code yqv9)", "https://pan.baidu.com/s/1Zh6yv2AouboGEP4phyR7xA?pwd=yqv9"),
    ("OneDrive", "https://1drv.ms/f/s!AimBgYV7JjTlgcpa7t2sywuWOm3HQA?e=LAh8WN"),
)
_INTERNIMAGE_URL = "https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_xl_22kto1k_384.pth"
#: task -> (README section, Baidu share id with its code, OneDrive share id) of the fine-tuned weights.
_FINETUNED_PAGES = {
    "classification": ("Scene Classification", "1w4ORVO4Q4XGzOJY0NMBy8Q?pwd=jsoc",
                       "AiSncQLqo7V6gTwi2qBsPuiSrgrL?e=utqMdY"),
    "detection": ("Horizontal Object Detection", "1yiJISQYg0Xl84PvZr_r84w?pwd=ag0x",
                  "AiSncQLqo7V6gUNIOKO-VtlKyT4d?e=NXA4Nw"),
    "rotated_detection": ("Rotated Object Detection", "1K7yCPmr1kGd--QRWnaEjMg?pwd=1o98",
                          "AiSncQLqo7V6gUqBkd0jFEDi2bkJ?e=ja8jJK"),
    "segmentation": ("Semantic Segmentation", "1H0ZaPRcxfuyVLjK5hrsSQw?pwd=udv5",
                     "AiSncQLqo7V6gVGc75VWbetEGbZ0?e=VawLcI"),
    "change_detection": ("Change Detection", "1-FYYGUmzIMbsbgpde7l0uw?pwd=by7w",
                         "AiSncQLqo7V6gVjJ6TUTsQg62SaO?e=bxFnH5"),
}  # fmt: skip
_OFFICIAL_DIRS = {
    "classification": "RS_Tasks_Finetune/Scene_Classification/configs/mtp/",
    "detection": "RS_Tasks_Finetune/Horizontal_Detection/configs/mtp/",
    "rotated_detection": "RS_Tasks_Finetune/Rotated_Detection/mmrotate1.x/configs/mtp/",
    "segmentation": "RS_Tasks_Finetune/Semantic_Segmentation/configs/mtp/",
    "change_detection": "RS_Tasks_Finetune/Change_Detection/configs/mtp/",
}
#: create_model architecture -> the function that loads a whole file of it (official toolbox layout or mtp).
LOADERS = {
    "upernet": "mtp.models.segmentor.load_segmentor_checkpoint",
    "classifier": "mtp.models.classifier.load_classifier_checkpoint",
    "changenet": "mtp.models.change_detector.load_change_detector_checkpoint",
    "faster_rcnn": "mtp.models.detectors.horizontal.keymap.load_mmdet_detector",
    "mask_rcnn": "mtp.models.detectors.horizontal.keymap.load_mmdet_detector",
    "retinanet": "mtp.models.detectors.horizontal.keymap.load_mmdet_detector(retinanet=True)",
    "oriented_rcnn": "mtp.models.detectors.oriented_rcnn.model.load_oriented_rcnn_checkpoint",
    "mtp": "mtp.models.pretraining.load_mtp_checkpoint",
}
_KEYS = {
    "upernet": "`state_dict`: mmseg EncoderDecoder, `backbone.*` + `decode_head.*`",
    "classifier": "`state_dict`: mmpretrain ImageClassifier, `backbone.*` + `head.fc.*`",
    "changenet": "`state_dict`: Open-CD SiamEncoderDecoder, `backbone.*` + `decode_head.*`",
    "faster_rcnn": "`state_dict`: mmdet FasterRCNN, `backbone.*`, `neck.*`, `rpn_head.*`, `roi_head.*`",
    "retinanet": "`state_dict`: mmdet RetinaNet, `backbone.*`, `neck.*`, `bbox_head.*`",
    "oriented_rcnn": "`state_dict`: mmrotate 1.x Oriented R-CNN, `backbone.*`, `neck.*`, `rpn_head.*`, `roi_head.*`",
}
_ARCH_LABELS = {
    "upernet": "UperNet", "classifier": "scene classifier", "changenet": "UNet change detector",
    "faster_rcnn": "Faster R-CNN", "mask_rcnn": "Mask R-CNN", "retinanet": "RetinaNet",
    "oriented_rcnn": "Oriented R-CNN",
}  # fmt: skip
_BACKBONE_LABELS = {"vit_b_rvsa": "ViT-B+RVSA", "vit_l_rvsa": "ViT-L+RVSA", "internimage_xl": "InternImage-XL"}


@dataclass(frozen=True)
class Weights:
    """One file of the release.

    ``filename``: the official file name; ``relpath``: where it goes under ``$MTP_HOME``. ``pages``: (label, URL)
    download pages as the README gives them, ``where``: the table / row there; ``url``: a direct link (only where
    one exists). ``keys``: the file's layout (which prefix). ``model``: the ``create_model`` name the whole file
    loads into (None: a backbone file for ``create_backbone``); ``create_kwargs``: the arguments that rebuild the
    official run's model. ``official_config``: path in ViTAE-Transformer/MTP; ``configs``: our config twins of
    the runs that use it (backbone files) or produced it (whole and fine-tuned files). ``metric``: the paper's.
    """

    name: str
    filename: str
    kind: str  # "backbone" | "pretraining" | "finetuned"
    backbone: str
    pretraining: str  # "MAE", "IMP", "MAE+MTP", "IMP+MTP"
    dataset: str
    task: str
    pages: tuple[tuple[str, str], ...]
    where: str
    keys: str
    model: str | None = None
    create_kwargs: Mapping[str, Any] = field(default_factory=dict)
    official_config: str | None = None
    configs: tuple[str, ...] = ()
    metric: tuple[str, float] | None = None
    url: str | None = None
    subdir: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "create_kwargs", MappingProxyType(dict(self.create_kwargs)))

    @property
    def architecture(self) -> str | None:
        """The ``create_model`` architecture (``upernet``, ...) the whole file loads into; None for backbone files."""
        return None if self.model is None else self.model[: -len(self.backbone) - 1]

    @property
    def loader(self) -> str:
        if self.model is None:
            return "mtp.models.load_checkpoint (create_backbone(..., pretrained=NAME))"
        return LOADERS[self.architecture]

    @property
    def relpath(self) -> str:
        """Location under ``$MTP_HOME`` (posix)."""
        return f"{self.subdir}/{self.filename}" if self.subdir else self.filename

    @property
    def label(self) -> str:
        """One line: backbone, what the file holds, what it was trained on."""
        backbone = _BACKBONE_LABELS.get(self.backbone, self.backbone)
        if self.kind == "finetuned":
            return f"{backbone} {_ARCH_LABELS[self.architecture]} fine-tuned on {self.dataset} from {self.pretraining}"
        what = "encoder" if self.kind == "backbone" else "whole MTP model (encoder + the three task decoders)"
        return f"{backbone} {what}, {self.pretraining} on {self.dataset}"


def _twin_stem(pattern: str, backbone: str) -> str:
    """Our twin of a run: ``pattern`` in the ViT form (``vit-rvsa-{s}-...``, ``rvsa-{s}-...``, routes ``mae`` /
    ``mae-mtp``) for ``backbone``; InternImage-XL twins are named ``intern-xl-...`` with routes ``imp`` /
    ``imp-mtp``, as the official configs."""
    if backbone == "internimage_xl":
        return pattern.replace("vit-rvsa-{s}", "intern-xl").replace("rvsa-{s}", "intern-xl").replace("mae", "imp")
    return pattern.replace("{s}", backbone[4])


def _twins(backbone: str, route: str) -> tuple[str, ...]:
    """Our config twins of ``backbone`` runs initialised from ``route`` (ViT 'mae' / 'mae-mtp', InternImage-XL
    'imp' / 'imp-mtp'), plus the pretraining twin for the file the MTP run starts from."""
    stems = (
        "classification/vit-rvsa-{s}-224-{r}-eurosat", "classification/vit-rvsa-{s}-224-{r}-resisc45",
        "detection/faster-rcnn-rvsa-{s}-800-{r}-dior", "detection/retinanet-rvsa-{s}-416-{r}-xview",
        "rotated_detection/oriented-rcnn-rvsa-{s}-800-{r}-diorr",
        "rotated_detection/oriented-rcnn-rvsa-{s}-800-{r}-fair1m20",
        "rotated_detection/oriented-rcnn-rvsa-{s}-1024-{r}-dota10",
        "rotated_detection/oriented-rcnn-rvsa-{s}-1024-{r}-dota20",
        "segmentation/rvsa-{s}-upernet-512-{r}-loveda", "segmentation/rvsa-{s}-upernet-384-{r}-spacenetv1",
        "change_detection/rvsa-{s}-unet-256-{r}-levir", "change_detection/rvsa-{s}-unet-256-{r}-whu",
        "change_detection/rvsa-{s}-unet-256-{r}-cdd", "change_detection/rvsa-{s}-unet-96-{r}-oscd",
    )  # fmt: skip
    paths = [f"configs/{_twin_stem(stem, backbone).format(r=route)}.yaml" for stem in stems]
    if route in ("mae", "imp"):  # the MTP run starts from this file
        paths.append(f"configs/{_pretraining_twin(backbone)}")
    return tuple(paths)


def _pretraining_twin(backbone: str) -> str:
    if backbone == "internimage_xl":
        return "pretraining/internimage-xl-448-imp-samrs-mtp-three.yaml"
    return f"pretraining/vit-{backbone[4]}-rvsa-448-mae-samrs-mtp-three.yaml"


def _pretrained() -> list[Weights]:
    pre = "MTP README, table 'Pretrained Models'"
    mae_keys = "`model`: timm ViT names + `cls_token`, `pos_embed` (1, 1 + 14², D), MAE `decoder*`; no prefix"
    enc_keys = "`state_dict`: backbone names without prefix ({names}); also `optimizer`, `scheduler`, ..."
    vit_names = "`patch_embed`, `pos_embed`, `blocks.N`, unused `norm`, `fpn1`, `fpn2`"
    imp_names = "`patch_embed`, `levels`"
    whole_keys = ("`state_dict`: `encoder.*` + `semsegdecoder.*`, `semseghead_k`, `inssegdecoder.*`, `insseg*k`, "
                  "`rotdetdecoder.*`, `rotdet*k` (k = 1 SOTA, 2 SIOR, 3 FAST)")  # fmt: skip
    samrs = "SAMRS (SOTA-RBB, SIOR, FAST)"
    mtp_config = "Multi-Task_Pretrain/main_pretrain.py"
    entries = [
        Weights("mae:vit_b_rvsa", "vit-b-checkpoint-1599.pth", "backbone", "vit_b_rvsa", "MAE", "MillionAID",
                "pretraining", (("OneDrive", "https://1drv.ms/u/s!AimBgYV7JjTlgUPBC6cvpo4oZDSR?e=kNCAhO"),),
                "Remote-Sensing-RVSA README, table 'Pretraining' (MAE, ViT-B)", mae_keys,
                configs=_twins("vit_b_rvsa", "mae")),
        Weights("mae:vit_l_rvsa", "vit-l-mae-checkpoint-1599.pth", "backbone", "vit_l_rvsa", "MAE", "MillionAID",
                "pretraining", _PRETRAINED_PAGES, f"{pre}, row 'MAE, ViT-L', column 'Backbone Weights'", mae_keys,
                configs=_twins("vit_l_rvsa", "mae")),
        Weights("imp:internimage_xl", "internimage_xl_22kto1k_384.pth", "backbone", "internimage_xl", "IMP",
                "ImageNet-22k -> 1k", "pretraining",
                (("HuggingFace (direct link)", _INTERNIMAGE_URL),),
                "OpenGVLab/InternImage README, table 'ImageNet-1K' (InternImage-XL, 22k -> 1k, 384, 'pth')",
                "`model`: InternImage names (`patch_embed`, `levels`) + ImageNet head (`conv_head`, `head`, ...)",
                url=_INTERNIMAGE_URL, configs=_twins("internimage_xl", "imp")),
    ]
    for backbone, route, size in (("vit_b_rvsa", "MAE+MTP", "b"), ("vit_l_rvsa", "MAE+MTP", "l"),
                                  ("internimage_xl", "IMP+MTP", None)):  # fmt: skip
        row = f"row '{route}, {_BACKBONE_LABELS[backbone]}'"
        names = imp_names if size is None else vit_names
        configs = _twins(backbone, "imp-mtp" if size is None else "mae-mtp")
        produced_by = (f"configs/{_pretraining_twin(backbone)}",)
        entries += [
            Weights(f"mtp:{backbone}", f"last_{backbone}_ss_is_rd_pretrn_model_encoder.pth", "backbone", backbone,
                    route, samrs, "pretraining", _PRETRAINED_PAGES, f"{pre}, {row}, column 'Backbone Weights'",
                    enc_keys.format(names=names), official_config=mtp_config, configs=configs),
            Weights(f"mtp-whole:{backbone}", f"last_{backbone}_ss_is_rd_pretrn_model.pth", "pretraining", backbone,
                    route, samrs, "pretraining", _PRETRAINED_PAGES, f"{pre}, {row}, column 'Model Weights'",
                    whole_keys, model=f"mtp_{backbone}", create_kwargs={"img_size": 448},
                    official_config=mtp_config, configs=produced_by),
        ]  # fmt: skip
    return entries


# (dataset key, dataset label, task, architecture, img_size, num_classes, file, metric,
#  paper values (ViT-B, ViT-L, InternImage-XL), official configs (same order), our twins (ViT-B, ViT-L))
_FINETUNED = (
    ("eurosat", "EuroSAT", "classification", "classifier", 224, 10, "epoch_100.pth", "top-1 accuracy %",
     (98.76, 98.78, 99.24), ("eurosat/vit-rvsa-b-224-mae-mtp_eurosat.py", "eurosat/vit-rvsa-l-224-mae-mtp_eurosat.py",
                             "eurosat/intern-xl-224-imp-mtp_eurosat.py"), "vit-rvsa-{s}-224-mae-mtp-eurosat"),
    ("resisc45", "RESISC-45 (20 % train)", "classification", "classifier", 224, 45, "epoch_200.pth", "top-1 accuracy %",
     (95.57, 95.88, 96.27), ("resisc45/vit-rvsa-b-224-mae-mtp_nwpu28.py", "resisc45/vit-rvsa-l-224-mae-mtp_nwpu28.py",
                             "resisc45/intern-xl-224-imp-mtp_nwpu28.py"), "vit-rvsa-{s}-224-mae-mtp-resisc45"),
    ("xview", "xView", "detection", "retinanet", 416, 60, "epoch_12.pth", "AP50 %", (16.40, 19.40, 18.20),
     ("xview/retinanet_rvsa_b_416_mae_mtp_xview.py", "xview/retinanet_rvsa_l_416_mae_mtp_xview.py",
      "xview/retinanet_intern_xl_416_imp_mtp_xview.py"), "retinanet-rvsa-{s}-416-mae-mtp-xview"),
    ("dior", "DIOR", "detection", "faster_rcnn", 800, 20, "epoch_12.pth", "AP50 %", (79.00, 81.70, 78.30),
     ("dior/faster_rcnn_rvsa_b_800_mae_mtp_dior.py", "dior/faster_rcnn_rvsa_l_800_mae_mtp_dior.py",
      "dior/faster_rcnn_intern_xl_800_imp_mtp_dior.py"), "faster-rcnn-rvsa-{s}-800-mae-mtp-dior"),
    ("diorr", "DIOR-R", "rotated_detection", "oriented_rcnn", 800, 20, "epoch_12.pth", "mAP %", (71.29, 74.54, 72.17),
     ("dior-r/oriented_rcnn_rvsa_b_800_mae_mtp_diorr.py", "dior-r/oriented_rcnn_rvsa_l_800_mae_mtp_diorr.py",
      "dior-r/oriented_rcnn_intern_xl_800_imp_mtp_diorr.py"), "oriented-rcnn-rvsa-{s}-800-mae-mtp-diorr"),
    ("fair1m20", "FAIR1M-2.0", "rotated_detection", "oriented_rcnn", 800, 37, "epoch_12.pth", "mAP % (server)",
     (51.92, 53.00, 50.93), ("fair1m20/oriented_rcnn_rvsa_b_800_mae_mtp_fair1m20_branches.py",
                             "fair1m20/oriented_rcnn_rvsa_l_800_mae_mtp_fair1m20_branches.py",
                             "fair1m20/oriented_rcnn_intern_xl_800_imp_mtp_fair1m20.py"),
     "oriented-rcnn-rvsa-{s}-800-mae-mtp-fair1m20"),
    ("spacenetv1", "SpaceNet v1", "segmentation", "upernet", 384, 2, "iter_80000.pth", "mIoU %", (79.63, 79.54, 79.16),
     ("spacenetv1/rvsa-b-upernet-384-mae-mtp-spacenetv1.py", "spacenetv1/rvsa-l-upernet-384-mae-mtp-spacenetv1.py",
      "spacenetv1/intern-xl-upernet-384-imp-mtp-spacenetv1.py"), "rvsa-{s}-upernet-384-mae-mtp-spacenetv1"),
    ("loveda", "LoveDA", "segmentation", "upernet", 512, 7, "iter_80000.pth", "mIoU % (server)", (52.39, 54.17, 54.17),
     ("loveda/rvsa-b-upernet-512-mae-mtp-loveda.py", "loveda/rvsa-l-upernet-512-mae-mtp-loveda.py",
      "loveda/intern-xl-upernet-512-imp-mtp-loveda.py"), "rvsa-{s}-upernet-512-mae-mtp-loveda"),
    ("oscd", "OSCD (RGB)", "change_detection", "changenet", 224, 2, "epoch_100.pth", "F1 changed %",
     (53.36, 55.92, 55.61), ("oscd/rvsa-b-unet-96-mae-mtp_oscd_rgb.py", "oscd/rvsa-l-unet-96-mae-mtp_oscd_rgb.py",
                             "oscd/intern-xl-unet-96-imp-mtp_oscd_rgb.py"), "rvsa-{s}-unet-96-mae-mtp-oscd"),
    ("whu", "WHU-CD", "change_detection", "changenet", 256, 2, "epoch_200.pth", "F1 changed %", (94.32, 94.75, 95.59),
     ("whu/rvsa-b-unet-256-mae-mtp_whu.py", "whu/rvsa-l-unet-256-mae-mtp_whu.py",
      "whu/intern-xl-unet-256-imp-mtp_whu.py"),
     "rvsa-{s}-unet-256-mae-mtp-whu"),
    ("levir", "LEVIR-CD", "change_detection", "changenet", 256, 2, "epoch_150.pth", "F1 changed %",
     (92.22, 92.67, 92.54), ("levir/rvsa-b-unet-256-mae-mtp_levir.py", "levir/rvsa-l-unet-256-mae-mtp_levir.py",
                             "levir/intern-xl-unet-256-imp-mtp_levir.py"), "rvsa-{s}-unet-256-mae-mtp-levir"),
    ("cdd", "CDD (SVCD)", "change_detection", "changenet", 256, 2, "epoch_200.pth", "F1 changed %",
     (97.87, 97.98, 98.33), ("cdd/rvsa-b-unet-256-mae-mtp_cdd.py", "cdd/rvsa-l-unet-256-mae-mtp_cdd.py",
                             "cdd/intern-xl-unet-256-imp-mtp_cdd.py"), "rvsa-{s}-unet-256-mae-mtp-cdd"),
)  # fmt: skip


def _finetuned() -> list[Weights]:
    entries = []
    for key, label, task, arch, size, classes, filename, metric, values, officials, twin in _FINETUNED:
        section, baidu, onedrive = _FINETUNED_PAGES[task]
        pages = (("Baidu", f"https://pan.baidu.com/s/{baidu}"), ("OneDrive", f"https://1drv.ms/f/s!{onedrive}"))
        for i, backbone in enumerate(("vit_b_rvsa", "vit_l_rvsa", "internimage_xl")):
            vit = backbone != "internimage_xl"
            route = "MAE+MTP" if vit else "IMP+MTP"
            kwargs = {"num_classes": classes, "img_size": size, "drop_path_rate": 0.3 if vit else 0.2}
            official = _OFFICIAL_DIRS[task] + officials[i]
            entries.append(Weights(
                f"{key}:{arch}_{backbone}_{route.lower().replace('+', '_')}", filename, "finetuned", backbone, route,
                label, task, pages, f"MTP README, Finetuned Models › {section}, row '{route}, {label}, "
                f"{_BACKBONE_LABELS[backbone]}'", _KEYS["faster_rcnn" if arch == "mask_rcnn" else arch],
                model=f"{arch}_{backbone}", create_kwargs=kwargs, official_config=official,
                configs=(f"configs/{task}/{_twin_stem(twin, backbone)}.yaml",),
                metric=(metric, values[i]), subdir=official.rsplit("/", 1)[1].removesuffix(".py"),
            ))  # fmt: skip
    return entries


CATALOGUE: dict[str, Weights] = {w.name: w for w in (*_pretrained(), *_finetuned())}
