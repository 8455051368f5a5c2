"""mtp: multi-task pretraining and fine-tuning of remote-sensing foundation models (MTP, ViT+RVSA)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mtp")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
