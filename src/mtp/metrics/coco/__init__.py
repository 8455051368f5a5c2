"""COCO bbox / segm evaluation with mmdet's conventions (:mod:`~mtp.metrics.coco.evaluation`, pycocotools
underneath) and the DDP-safe metric object (:mod:`~mtp.metrics.coco.metric`)."""

from mtp.metrics.coco.evaluation import coco_evaluate, flatten_metrics
from mtp.metrics.coco.metric import CocoDetectionMetric

__all__ = ["CocoDetectionMetric", "coco_evaluate", "flatten_metrics"]
