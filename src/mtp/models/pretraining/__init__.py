"""MTP multi-task pretraining model: shared encoder, three task decoders, per-dataset heads."""

from mtp.models.pretraining.framework import (
    DATASET_INDEX,
    OFFICIAL_NUM_CLASSES,
    TASKS,
    MultiTaskPretrainModel,
    build_mtp_model,
    total_loss,
)
from mtp.models.pretraining.keymap import (
    encoder_state_dict,
    load_mtp_checkpoint,
    official_state_dict,
    official_to_ours,
    ours_to_official,
)

__all__ = [
    "DATASET_INDEX",
    "OFFICIAL_NUM_CLASSES",
    "TASKS",
    "MultiTaskPretrainModel",
    "build_mtp_model",
    "encoder_state_dict",
    "load_mtp_checkpoint",
    "official_state_dict",
    "official_to_ours",
    "ours_to_official",
    "total_loss",
]
