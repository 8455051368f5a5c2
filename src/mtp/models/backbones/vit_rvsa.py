"""ViT + RVSA backbone of MTP, with the official parameter names and numerics.

Structure (docs/CONVENTIONS.md#backbones, docs/CHECKPOINTS.md#vitrvsa-copies): patch embedding (Conv 16x16,
stride 16) + absolute position embedding (no class token) -> ``depth`` pre-norm blocks; block i uses global
attention iff (i + 1) % interval == 0, otherwise rotated varied-size window attention (window 7). The
outputs of blocks ``out_indices`` are either

* ``pyramid=True`` (segmentation, detection and pretraining copies): passed through the
  ``fpn1``..``fpn4`` adapters -> 4 maps at strides 4, 8, 16, 32, or
* ``pyramid=False`` (classification and change-detection copies): returned as they are -> 4 maps
  at stride 16 (the official copies keep unused fpn weights; we do not create them, so DDP needs
  no ``find_unused_parameters``, and the loader ignores those keys).

``global_rel_pos=False`` gives the detection copy (``RVSA_MTP_branches``): global blocks without
relative-position tables.

Input: float (B, in_chans, H, W), H and W multiples of 16, normalised RGB
(docs/CONVENTIONS.md#images-and-normalisation). Any such size works: the position embedding and the global
tables are resized (official bicubic rule) to the actual token grid at run time. Output: tuple of 4
(B, embed_dim, H/s, W/s) maps in channels-last memory format (views of the token-major activations; the
convolutional necks and heads run channels-last from there, which cuDNN prefers for bf16).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from timm.layers import DropPath, Mlp
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mtp.models.backbones.global_attention import GlobalAttention
from mtp.models.backbones.rvsa_attention import ATTN_IMPLS, RotatedVariedSizeWindowAttention, resolve_attn_impl
from mtp.ops.rel_pos import resize_pos_embed


class Block(nn.Module):
    """Pre-norm transformer block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x)))."""

    def __init__(self, dim: int, attn: nn.Module, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = attn
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Conv patch embedding: (B, C, H, W) -> (B, H/p * W/p, D) tokens and the grid (H/p, W/p)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        if x.ndim != 4 or x.shape[-2] % self.patch_size or x.shape[-1] % self.patch_size:
            raise ValueError(
                f"ViT+RVSA expects a (B, C, H, W) batch with H and W multiples of {self.patch_size}, "
                f"got shape {tuple(x.shape)}"
            )
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])


class Norm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map (official name ``ln``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ViTRVSA(nn.Module):
    """ViT with rotated varied-size window attention (see the module docstring).

    Args:
        img_size: the training size; fixes the stored ``pos_embed`` grid (img_size/16 square) and
            the global tables (2*img_size/16 - 1). Other input sizes are resized at run time.
        patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, qkv_bias: ViT shape.
        interval: block i is global iff (i + 1) % interval == 0.
        window_size: RVSA window (7 in every official model).
        out_indices: the 4 blocks whose outputs are returned.
        drop_path_rate: stochastic depth, linear from 0 to this value over the blocks.
        global_rel_pos: False for the detection copy (no tables in global blocks).
        pyramid: True -> fpn1..fpn4 (strides 4/8/16/32); False -> the raw stride-16 taps.
        use_checkpoint: activation checkpointing of every block while training.
        compile_blocks: regional ``torch.compile`` of every block (:meth:`compile_blocks`); parameter
            names and checkpoints are unchanged.
        attn_impl: ``"auto"`` (default: the fast path for the input's device, see
            :func:`~mtp.models.backbones.rvsa_attention.resolve_attn_impl`), ``"sdpa"``, ``"flex"`` or
            ``"reference"`` (the official arithmetic; docs/PERFORMANCE.md#attention-paths).
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        interval: int = 3,
        window_size: int = 7,
        out_indices: Sequence[int] = (3, 5, 7, 11),
        drop_path_rate: float = 0.1,
        global_rel_pos: bool = True,
        pyramid: bool = True,
        use_checkpoint: bool = False,
        attn_impl: str = "auto",
        compile_blocks: bool = False,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        if (
            len(out_indices) != 4
            or list(out_indices) != sorted(set(out_indices))
            or not 0 <= out_indices[0] <= out_indices[-1] < depth
        ):
            raise ValueError(f"out_indices must be 4 increasing block indices in [0, {depth}), got {list(out_indices)}")
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl must be one of {ATTN_IMPLS}, got {attn_impl!r}")
        if pyramid and patch_size != 16:
            raise ValueError("the fpn1..fpn4 pyramid is defined for patch_size 16 only")
        self.img_size, self.patch_size, self.embed_dim, self.depth = img_size, patch_size, embed_dim, depth
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.out_indices = tuple(int(i) for i in out_indices)
        self.interval, self.pyramid, self.use_checkpoint = interval, pyramid, use_checkpoint
        self.global_rel_pos = global_rel_pos

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid_size[0] * self.grid_size[1], embed_dim))
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear 0 -> max
        blocks = []
        for i in range(depth):
            if self.is_global_block(i):
                attn = GlobalAttention(
                    embed_dim,
                    num_heads,
                    qkv_bias,
                    rel_pos_size=self.grid_size[0] if global_rel_pos else None,
                    attn_impl=attn_impl,
                )
            else:
                attn = RotatedVariedSizeWindowAttention(embed_dim, num_heads, window_size, qkv_bias, attn_impl)
            blocks.append(Block(embed_dim, attn, mlp_ratio, dpr[i]))
        self.blocks = nn.ModuleList(blocks)
        if pyramid:
            self.fpn1 = nn.Sequential(
                nn.ConvTranspose2d(embed_dim, embed_dim, kernel_size=2, stride=2),
                Norm2d(embed_dim),
                nn.GELU(),
                nn.ConvTranspose2d(embed_dim, embed_dim, kernel_size=2, stride=2),
            )
            self.fpn2 = nn.Sequential(nn.ConvTranspose2d(embed_dim, embed_dim, kernel_size=2, stride=2))
            self.fpn3 = nn.Identity()
            self.fpn4 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.out_channels = [embed_dim] * 4
        self.strides = [4, 8, 16, 32] if pyramid else [patch_size] * 4
        self._pos_cache: dict[tuple, Tensor] = {}
        self._blocks_compiled = False
        self._init_weights()
        if compile_blocks:
            self.compile_blocks()

    def is_global_block(self, index: int) -> bool:
        return (index + 1) % self.interval == 0

    def get_num_layers(self) -> int:
        return self.depth

    def set_attn_impl(self, attn_impl: str) -> None:
        """Switch every attention module to ``attn_impl`` (one of ``ATTN_IMPLS``)."""
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl must be one of {ATTN_IMPLS}, got {attn_impl!r}")
        for block in self.blocks:
            block.attn.attn_impl = attn_impl

    def compile_blocks(self, **compile_kwargs) -> None:
        """Regional compilation: ``torch.compile`` each block in place (``nn.Module.compile``).

        Parameter names, checkpoints and the eager model are unchanged. Blocks of one kind (window /
        global) share their code: parameters are graph inputs, so each kind compiles once per token
        grid, not once per block. The batch dimension is marked dynamic (every batch size >= 2 reuses
        the code; batch 1 is PyTorch's usual specialisation); the token grid is static (``dynamic=False``):
        a new input size compiles once, sizes seen before never recompile. Fully symbolic grids were
        measured slower to trace (30-60 s per block kind on CPU, even without code generation) and still
        recompiled when the window padding or count changed, so static grids are the better trade.
        Keyword arguments go to ``torch.compile`` (e.g. ``backend``, ``mode``).
        """
        compile_kwargs.setdefault("dynamic", False)
        for block in self.blocks:
            block.compile(**compile_kwargs)
        self._blocks_compiled = True

    def _init_weights(self) -> None:
        """Official construction-time init: trunc-normal(0.02) Linear / pos_embed, LN 1/0, and
        attn.proj / mlp.fc2 weights of block i divided by sqrt(2 (i + 1))."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            for i, block in enumerate(self.blocks):
                block.attn.proj.weight.div_(math.sqrt(2.0 * (i + 1)))
                block.mlp.fc2.weight.div_(math.sqrt(2.0 * (i + 1)))

    def position_embedding(self, hw: tuple[int, int]) -> Tensor:
        """(1, H*W, D) absolute position embedding for a (H, W) token grid."""
        if tuple(hw) == self.grid_size:
            return self.pos_embed
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return resize_pos_embed(self.pos_embed, self.grid_size, hw)
        p = self.pos_embed
        key = (tuple(hw), p.device, p.dtype, p._version, p.data_ptr())
        if key not in self._pos_cache:
            self._pos_cache.clear()
            self._pos_cache[key] = resize_pos_embed(p, self.grid_size, hw)
        return self._pos_cache[key]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(B, C, H, W) -> 4 maps (B, D, H/s, W/s), s = self.strides."""
        b = x.shape[0]
        x, hw = self.patch_embed(x)
        x = x + self.position_embedding(hw).to(x.dtype)
        if resolve_attn_impl(self.blocks[0].attn.attn_impl, x.device) != "reference":
            # The embedding's transpose is a strided view, and element-wise ops keep that layout: without
            # this copy the whole residual stream stays channel-major (as officially), and every LayerNorm,
            # Linear and window reshape pays a copy. The reference path keeps the official layout.
            x = x.contiguous()
        mark_batch = self._blocks_compiled and not torch.compiler.is_compiling()
        taps = []
        for i, block in enumerate(self.blocks):
            if mark_batch:
                torch._dynamo.mark_dynamic(x, 0)  # one compiled block for every batch size (compile_blocks)
            if self.use_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, hw, use_reentrant=False)
            else:
                x = block(x, hw)
            if i in self.out_indices:  # token-major -> an NCHW view in channels-last memory (no copy)
                taps.append(x.reshape(b, *hw, self.embed_dim).permute(0, 3, 1, 2))
        if not self.pyramid:
            return tuple(taps)
        return (self.fpn1(taps[0]), self.fpn2(taps[1]), self.fpn3(taps[2]), self.fpn4(taps[3]))
