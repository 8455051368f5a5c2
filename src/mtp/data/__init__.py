"""Data: dataset readers, transforms, datamodules, synthetic data and format tools."""
