"""Training and evaluation transforms per task family: ``segmentation`` (mmseg pipelines), ``photometric``
(PhotoMetricDistortion), ``rotated`` (mmrotate, polygons + rboxes), ``horizontal`` (mmdet), ``change`` (Open-CD,
joint A/B), ``samrs`` (MTP pretraining) and ``classification`` (mmpretrain via timm)."""
