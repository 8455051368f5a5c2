"""Official-equivalent metrics: semantic segmentation / change detection (mmseg ``IoUMetric``), classification,
COCO detection (:mod:`mtp.metrics.coco`) and DOTA-family rotated detection (:mod:`mtp.metrics.dota`)."""
