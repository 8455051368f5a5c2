"""DCNv3, the deformable convolution of InternImage, in pure PyTorch (conventions: :mod:`mtp.ops.dcnv3.core`).

>>> from mtp.ops import dcnv3_core
>>> out = dcnv3_core(value, offset, mask, group=12, offset_scale=2.0)   # (N, H, W, C) channels-last
"""

from mtp.ops.dcnv3.core import DCN_IMPLS, dcnv3_core
from mtp.ops.dcnv3.geometry import DCNv3Geometry

__all__ = ["DCN_IMPLS", "DCNv3Geometry", "dcnv3_core"]
