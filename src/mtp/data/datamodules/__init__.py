"""LightningDataModules, one per task family (configs name them as ``mtp.data.datamodules.<Class>``); shared
loader construction (seeding, worker start method, padded collate) in :mod:`mtp.data.datamodules.common`."""

from mtp.data.datamodules.change import ChangeDetectionDataModule
from mtp.data.datamodules.classification import ClassificationDataModule
from mtp.data.datamodules.horizontal import DetectionDataModule
from mtp.data.datamodules.pretraining import PretrainingDataModule
from mtp.data.datamodules.rotated import RotatedDetectionDataModule
from mtp.data.datamodules.segmentation import SegmentationDataModule

__all__ = [
    "ChangeDetectionDataModule",
    "ClassificationDataModule",
    "DetectionDataModule",
    "PretrainingDataModule",
    "RotatedDetectionDataModule",
    "SegmentationDataModule",
]
