"""Procedural images of textured coloured shapes on cluttered backgrounds.

Every image shows one main object described by three attributes -- a colour, a texture
and a shape, e.g. "red striped circle" -- at a random position, scale and rotation, over
a noisy two-colour gradient background with small solid distractor shapes in *other*
colours.  The attribute vocabulary is larger than the demo benchmark's twelve classes
(:data:`BENCHMARK_COLOURS` x :data:`BENCHMARK_TEXTURES` x :data:`BENCHMARK_SHAPES`), so a
tiny CLIP pretrained on captions of the full space has to transfer to the benchmark's
class phrases zero-shot.

Rendering is pure NumPy in float64 from one ``numpy.random.Generator``; the same
generator state gives the same ``uint8`` pixels.  Coordinates are resolution-free
(``[-1, 1]`` across the image), so ``size`` only changes the sampling density.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

# Attribute vocabulary: hue in degrees for colours.
COLOUR_HUES: dict[str, float] = {
    "red": 0.0, "orange": 30.0, "yellow": 58.0, "green": 125.0, "blue": 225.0, "purple": 282.0,
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "hexagon")
TEXTURES: tuple[str, ...] = ("striped", "dotted", "checkered", "plain")

# The demo benchmark: 3 colours x 2 textures x 2 shapes = 12 classes.
BENCHMARK_COLOURS: tuple[str, ...] = ("red", "green", "blue")
BENCHMARK_TEXTURES: tuple[str, ...] = ("striped", "dotted")
BENCHMARK_SHAPES: tuple[str, ...] = ("circle", "square")


@dataclass(frozen=True)
class Attributes:
    """What the main object of an image is."""

    colour: str
    texture: str
    shape: str

    @property
    def phrase(self) -> str:
        """Class-name phrase, e.g. ``"red striped circle"``."""
        return f"{self.colour} {self.texture} {self.shape}"


def benchmark_classes() -> list[Attributes]:
    """The demo benchmark's classes in label order (colour, then texture, then shape)."""
    return [Attributes(c, t, s) for c in BENCHMARK_COLOURS for t in BENCHMARK_TEXTURES
            for s in BENCHMARK_SHAPES]


def all_attributes() -> list[Attributes]:
    """Every colour x texture x shape combination (the pretraining space)."""
    return [Attributes(c, t, s) for c in COLOUR_HUES for t in TEXTURES for s in SHAPES]


# ---------------------------------------------------------------------------------------
# geometry: signed distances in object units (the object spans about [-1, 1])

def _shape_distance(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Approximate signed distance to the shape's outline (negative inside)."""
    if shape == "circle":
        return np.hypot(x, y) - 0.95
    if shape == "square":
        return np.maximum(np.abs(x), np.abs(y)) - 0.8
    if shape == "triangle":  # equilateral, circumradius 1, apex up
        return _polygon_distance(x, y + 0.15, sides=3, apothem=0.55)
    if shape == "hexagon":
        return _polygon_distance(x, y, sides=6, apothem=0.85)
    if shape == "cross":
        arm, half = 0.95, 0.32
        return np.minimum(np.maximum(np.abs(x) - arm, np.abs(y) - half),
                          np.maximum(np.abs(x) - half, np.abs(y) - arm))
    if shape == "star":  # five points, inner radius 0.45
        radius = np.hypot(x, y)
        angle = np.arctan2(x, y)  # 0 at the top point
        sector = (angle / (2 * math.pi / 5)) % 1.0
        tip = np.abs(sector - 0.5) * 2.0  # 1 at a point, 0 between points
        return radius - (0.45 + 0.55 * tip ** 1.5)
    raise ValueError(f"unknown shape {shape!r}")


def _polygon_distance(x: np.ndarray, y: np.ndarray, sides: int, apothem: float) -> np.ndarray:
    """Distance-like function of a regular polygon (max over its edge normals)."""
    dist = np.full(x.shape, -np.inf)
    for k in range(sides):
        a = math.pi / 2 + (2 * k + 1) * math.pi / sides
        dist = np.maximum(dist, x * math.cos(a) + y * math.sin(a) - apothem)
    return dist


def _texture_mask(texture: str, x: np.ndarray, y: np.ndarray, period: float,
                  pixel: float, rng: np.random.Generator) -> np.ndarray:
    """Where the pattern's second colour shows (0..1, anti-aliased), in object units."""
    angle = rng.uniform(0, math.pi)
    phase_u, phase_v = rng.uniform(0, 1, size=2)
    u = (x * math.cos(angle) + y * math.sin(angle)) / period + phase_u
    v = (-x * math.sin(angle) + y * math.cos(angle)) / period + phase_v
    edge = pixel / period  # one pixel in pattern units
    if texture == "plain":
        return np.zeros_like(x)
    if texture == "striped":
        d = (np.abs((u % 1.0) - 0.5) - 0.25)  # inside a stripe when < 0
        return np.clip(0.5 - d / edge, 0.0, 1.0)
    if texture == "dotted":
        d = np.hypot(u - np.round(u), v - np.round(v)) - 0.3
        return np.clip(0.5 - d / edge, 0.0, 1.0)
    if texture == "checkered":
        s = np.sin(math.pi * u) * np.sin(math.pi * v)
        return np.clip(0.5 + s / (math.pi * edge), 0.0, 1.0)
    raise ValueError(f"unknown texture {texture!r}")


def _hsv(h_deg: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb((h_deg % 360.0) / 360.0, s, v))


def _object_colour(colour: str, rng: np.random.Generator) -> np.ndarray:
    return _hsv(COLOUR_HUES[colour] + rng.uniform(-10, 10), rng.uniform(0.7, 1.0),
                rng.uniform(0.7, 1.0))


def _paint(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    a = alpha[..., None]
    canvas *= 1.0 - a
    canvas += a * colour


# ---------------------------------------------------------------------------------------

def render(attrs: Attributes, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Render one image of ``attrs`` as ``uint8 [size, size, 3]``.

    All randomness (placement, colours, pattern, clutter, noise) is drawn from ``rng`` in
    a fixed order, so the same generator state always gives the same pixels.
    """
    coords = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    gy, gx = np.meshgrid(coords, coords, indexing="ij")
    pixel = 2.0 / size

    # background: low-saturation two-colour gradient + low-frequency blotches
    c0 = _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.3), rng.uniform(0.25, 0.85))
    c1 = _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.3), rng.uniform(0.25, 0.85))
    g_angle = rng.uniform(0, 2 * math.pi)
    ramp = np.clip(0.5 + 0.5 * (gx * math.cos(g_angle) + gy * math.sin(g_angle)), 0, 1)
    canvas = c0 * (1 - ramp[..., None]) + c1 * ramp[..., None]
    for _ in range(3):
        fx, fy = rng.uniform(1.0, 4.0, size=2)
        ph = rng.uniform(0, 2 * math.pi)
        amp = rng.uniform(0.02, 0.08)
        canvas += amp * np.sin(fx * math.pi * gx + fy * math.pi * gy + ph)[..., None]

    # clutter: small solid shapes in other colours (drawn first, may be occluded)
    others = [c for c in COLOUR_HUES if c != attrs.colour]
    for _ in range(int(rng.integers(2, 7))):
        colour = others[int(rng.integers(len(others)))]
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        cx, cy = rng.uniform(-0.9, 0.9, size=2)
        r = rng.uniform(0.1, 0.26)
        rot = rng.uniform(0, 2 * math.pi)
        x, y = _local(gx, gy, cx, cy, r, rot)
        d = _shape_distance(shape, x, y) * r
        _paint(canvas, np.clip(0.5 - d / pixel, 0, 1), _object_colour(colour, rng))

    # the main object
    r = rng.uniform(0.34, 0.62)
    cx, cy = rng.uniform(-0.95 + r, 0.95 - r, size=2)
    rot = rng.uniform(0, 2 * math.pi)
    x, y = _local(gx, gy, cx, cy, r, rot)
    base = _object_colour(attrs.colour, rng)
    towards = np.ones(3) if rng.uniform() < 0.5 else np.zeros(3)
    second = base + rng.uniform(0.45, 0.7) * (towards - base)
    period = rng.uniform(0.45, 0.65)
    pattern = _texture_mask(attrs.texture, x, y, period, pixel / r, rng)[..., None]
    fill = base * (1 - pattern) + second * pattern
    alpha = np.clip(0.5 - _shape_distance(attrs.shape, x, y) * r / pixel, 0, 1)[..., None]
    canvas = canvas * (1 - alpha) + fill * alpha

    canvas += rng.normal(0.0, rng.uniform(0.02, 0.06), size=canvas.shape)
    return np.round(np.clip(canvas, 0.0, 1.0) * 255.0).astype(np.uint8)


def _local(gx: np.ndarray, gy: np.ndarray, cx: float, cy: float, r: float,
           rot: float) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates -> object units (centred, rotated, scaled by ``r``)."""
    dx, dy = (gx - cx) / r, (gy - cy) / r
    c, s = math.cos(rot), math.sin(rot)
    return dx * c + dy * s, -dx * s + dy * c
