"""Dataset readers, one per format family; each returns sample dicts (see mtp.data.transforms.segmentation)."""
