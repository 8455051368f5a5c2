"""Materials and their precomputed textures.

A scene is first drawn as a *material map* (H, W) uint8; every material has a colour texture and a land-cover
class (:data:`MATERIAL_CLASS`, ids of ``LAND_COVER_CLASSES``). Textures are synthesised once per generator
(seeded), stored packed as uint32 RGBA, and a scene image is one gather ``textures[material, y + oy, x + ox]``
with a per-scene offset and flips. Colours are chosen so that each land-cover class is separable by colour and
texture alone (a tiny CNN learns them quickly):

======================  ===========  =======================================================
material                class        look
======================  ===========  =======================================================
GRASS, SOIL, CONCRETE   background   light yellow-green mottled / beige / light grey smooth
ROAD                    road         dark grey asphalt, fine grain
WATER                   water        dark blue, smooth
BARREN                  barren       sandy tan, coarse grain
FOREST                  forest       dark green tree-crown blobs, high contrast
FIELD_0..3              agricultural green/yellow stripes at 0, 45, 90, 135 degrees
ROOF_0..4               building     saturated roof colours (red, brown, slate blue, white, cyan)
======================  ===========  =======================================================
"""

from __future__ import annotations

import math

import cv2
import numpy as np

GRASS, SOIL, CONCRETE, ROAD, WATER, BARREN, FOREST = range(7)
FIELDS = (7, 8, 9, 10)  # stripe orientation 0, 45, 90, 135 degrees
ROOFS = (11, 12, 13, 14, 15)  # red, brown, slate blue, white, cyan
RESIDENTIAL_ROOFS = ROOFS[:3]
INDUSTRIAL_ROOFS = ROOFS[2:]
NUM_MATERIALS = 16

# land-cover class id (LAND_COVER_CLASSES) of every material
MATERIAL_CLASS = np.array([0, 0, 0, 2, 3, 4, 5, 6, 6, 6, 6, 1, 1, 1, 1, 1], dtype=np.uint8)

_BASE_RGB = {
    GRASS: (150, 160, 105),
    SOIL: (170, 166, 150),
    CONCRETE: (196, 196, 190),
    ROAD: (78, 78, 82),
    WATER: (32, 62, 104),
    BARREN: (214, 174, 116),
    FOREST: (38, 78, 36),
}
_ROOF_RGB = ((176, 58, 44), (132, 84, 52), (84, 100, 134), (236, 236, 232), (120, 196, 210))
# (low-frequency amplitude, grain amplitude) per material, in grey levels
_NOISE = {GRASS: (14, 6), SOIL: (12, 7), CONCRETE: (6, 3), ROAD: (4, 5), WATER: (6, 2), BARREN: (14, 12)}


def _low_freq(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth zero-mean unit-ish noise (h, w) float32 with feature size ~cell pixels."""
    grid = rng.standard_normal((h // cell + 3, w // cell + 3)).astype(np.float32)
    big = cv2.resize(grid, ((w // cell + 3) * cell, (h // cell + 3) * cell), interpolation=cv2.INTER_CUBIC)
    return big[cell : cell + h, cell : cell + w]


def _texture(rng: np.random.Generator, material: int, h: int, w: int) -> np.ndarray:
    """One material texture (h, w, 3) float32 RGB, 0..255 scale (not clipped)."""
    grain = rng.standard_normal((h, w)).astype(np.float32)
    chroma = _low_freq(rng, h, w, 48)[..., None] * np.array([4.0, -3.0, 2.0], np.float32)
    if material in _BASE_RGB and material != FOREST:
        low_amp, grain_amp = _NOISE[material]
        shade = _low_freq(rng, h, w, 32) * low_amp + grain * grain_amp
        return np.array(_BASE_RGB[material], np.float32) + shade[..., None] + chroma
    if material == FOREST:  # tree crowns: blurred grain, sharpened into blobs with dark gaps
        crowns = cv2.GaussianBlur(grain, (0, 0), 1.6)
        crowns = np.tanh(crowns * 4.0) * 22 + _low_freq(rng, h, w, 40) * 8
        return np.array(_BASE_RGB[FOREST], np.float32) + crowns[..., None] * np.array([0.8, 1.0, 0.7], np.float32)
    if material in FIELDS:
        angle = math.radians(45 * FIELDS.index(material))
        period = 7.0
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        phase = (xx * math.cos(angle) + yy * math.sin(angle)) * (2 * math.pi / period)
        stripe = np.clip(np.sin(phase) * 3, -1, 1)[..., None]  # square-ish wave
        light, dark = np.array([176, 186, 92], np.float32), np.array([86, 142, 52], np.float32)
        colour = (light + dark) / 2 + stripe * (light - dark) / 2
        return colour + (_low_freq(rng, h, w, 40) * 10 + grain * 5)[..., None]
    roof = np.array(_ROOF_RGB[ROOFS.index(material)], np.float32)
    return roof + (grain * 4 + _low_freq(rng, h, w, 24) * 4)[..., None]


def make_textures(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """All material textures packed as RGBA uint32: (NUM_MATERIALS, h, w); bytes R, G, B, 255."""
    out = np.empty((NUM_MATERIALS, h, w, 4), np.uint8)
    out[..., 3] = 255
    for m in range(NUM_MATERIALS):
        out[m, ..., :3] = np.clip(_texture(rng, m, h, w), 0, 255).astype(np.uint8)
    return out.view(np.uint32)[..., 0]


def colour_lut(gain: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """cv2.LUT table (1, 256, 3) uint8 for v -> clip(v * gain[c] + bias[c]) per RGB channel."""
    v = np.arange(256, dtype=np.float32)[:, None]
    return np.clip(v * gain[None, :] + bias[None, :], 0, 255).astype(np.uint8)[None]


def darker(rgb, factor: float = 0.6) -> tuple[int, int, int]:
    """A darker shade of an RGB colour (for ridges, rims, hatches)."""
    return tuple(int(c * factor) for c in rgb)


def roof_rgb(material: int) -> tuple[int, int, int]:
    """Mean RGB of a roof material."""
    return _ROOF_RGB[ROOFS.index(material)]


def material_rgb(material: int) -> tuple[int, int, int]:
    """Approximate mean RGB of a ground material (for low-contrast 'difficult' objects)."""
    if material in _BASE_RGB:
        return _BASE_RGB[material]
    if material in ROOFS:
        return roof_rgb(material)
    return (131, 164, 72)
