"""DOTA-family evaluation and result files: VOC-style AP (:mod:`~mtp.metrics.dota.ap`), the DOTA devkit and
mmrotate mAP (:mod:`~mtp.metrics.dota.evaluation`), the DDP-safe metric (:mod:`~mtp.metrics.dota.metric`),
Task1 / merged-patch submissions (:mod:`~mtp.metrics.dota.submission`) and FAIR1M-2.0 xml
(:mod:`~mtp.metrics.dota.fair1m`). Import order has no cycles: ap <- evaluation <- metric, submission."""

from mtp.metrics.dota.ap import format_ap_table, voc_ap
from mtp.metrics.dota.evaluation import eval_dota_devkit, eval_rbbox_map
from mtp.metrics.dota.fair1m import write_fair1m_xml
from mtp.metrics.dota.metric import DOTAMeanAP
from mtp.metrics.dota.submission import evaluate_task1_dirs, merge_patch_detections, write_dota_task1

__all__ = [
    "DOTAMeanAP",
    "eval_dota_devkit",
    "eval_rbbox_map",
    "evaluate_task1_dirs",
    "format_ap_table",
    "merge_patch_detections",
    "voc_ap",
    "write_dota_task1",
    "write_fair1m_xml",
]
