"""Synthetic medical-like images ("phantoms") with known findings, and their dialogue records.

A phantom is a small grayscale-as-RGB image drawn from a ``Findings`` record: a modality look
(CT, MRI or X-ray), a body outline with one organ (brain, lungs, liver or kidneys) and 0-3 round
lesions, each in the left or right half of the image, small or large, bright or dark. Because the
findings are known, every question about the image has a known answer.

Design goals, in order:

1. **Answers are balanced by construction.** For every fixed question text the answers are equally
   frequent over a generated set (and within each split), so a model that ignores the image scores
   chance. The findings are drawn by stratified sampling (``phantom_text.balanced``), and for every
   question kind the "form" asked (open, closed about the true value, closed about a distractor, or
   not asked) is assigned in exact proportions *within each stratum* of the answer, so asking never
   skews an answer distribution.
2. **Coarse, strong visual cues** (a tiny random-init vision tower must learn them at 32-64 px):
   lesions have a radius of 10 or 13 % of the image side and are nearly white (bright) or black (dark)
   on mid-grey tissue; their centres lie at least 18 % of the image side away from the midline;
   modalities differ in global intensity and texture (CT: grey body on black with a bright bone ring
   and fine noise; MRI: dark body, bright organ, smooth texture and a bias field, no ring;
   X-ray: bright projection band filling the height with a bright spine and a darker organ).
3. **Deterministic**: numpy ``default_rng`` only; the same seed gives byte-identical files.

Dialogue turns are asked in a fixed kind order (modality, organ, presence, count, side, size,
brightness) so that an earlier question's presence never gives away a later closed answer.
Run ``vmed data phantom --output DIR --n 1000 --seed 0`` (see docs/phantoms.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from vmed.constants import SPLITS
from vmed.data import phantom_text as T
from vmed.data.phantom_text import ALL_KINDS, DEFAULT_KINDS, QUESTION_KINDS, QuestionKind, plan_turns
from vmed.data.schema import Dialogue, Turn, write_jsonl
from vmed.errors import UserInputError

__all__ = [
    "Lesion",
    "Findings",
    "Phantom",
    "QuestionKind",
    "QUESTION_KINDS",
    "ALL_KINDS",
    "DEFAULT_KINDS",
    "sample_findings",
    "render_phantom",
    "make_phantoms",
    "generate_phantoms",
]

SOURCE = "phantom"
LESION_RADIUS = {"small": 0.10, "large": 0.13}
"""Lesion radius as a fraction of the image side."""
LESION_VALUE = {"bright": 250.0, "dark": 2.0}
_SLOT_Y = (0.20, 0.50, 0.80)
"""Vertical lesion slots (fractions); three slots per half so that 3 large lesions never touch."""
_SLOT_X_LEFT = ((0.28, 0.32), (0.17, 0.22), (0.28, 0.32))
"""Horizontal range of each slot's centre in the left half (mirrored for the right half)."""


@dataclass(frozen=True)
class Lesion:
    """One round lesion. ``cx``, ``cy``, ``radius`` are fractions of the image side (origin top-left)."""

    side: str
    size: str
    brightness: str
    cx: float
    cy: float
    radius: float

    def to_meta(self, size_px: int) -> dict:
        return {
            "side": self.side,
            "size": self.size,
            "brightness": self.brightness,
            "center_px": [round(self.cx * size_px, 2), round(self.cy * size_px, 2)],
            "radius_px": round(self.radius * size_px, 2),
        }


@dataclass(frozen=True)
class Findings:
    """Everything drawn in one phantom. All lesions of an image share size and brightness."""

    modality: str
    organ: str
    lesions: tuple[Lesion, ...] = ()
    layout: str | None = None
    """"left" / "right" / "both" (halves holding lesions), None without lesions."""

    @property
    def count(self) -> int:
        return len(self.lesions)

    @property
    def region(self) -> str:
        return T.ORGAN_REGION[self.organ]

    @property
    def size(self) -> str | None:
        return self.lesions[0].size if self.lesions else None

    @property
    def brightness(self) -> str | None:
        return self.lesions[0].brightness if self.lesions else None

    def summary(self) -> str:
        return T.summary_sentence(self.modality, self.organ, self.count, self.size, self.brightness, self.layout)

    def to_meta(self, size_px: int) -> dict:
        return {
            "modality": self.modality,
            "region": self.region,
            "organ": self.organ,
            "lesion_count": self.count,
            "layout": self.layout,
            "lesion_size": self.size,
            "lesion_brightness": self.brightness,
            "lesions": [les.to_meta(size_px) for les in self.lesions],
            "side_convention": "image (viewer's left/right of the vertical midline)",
            "image_size": size_px,
        }



def _place_lesions(rng: np.random.Generator, count: int, layout: str | None, size: str, brightness: str) -> tuple[Lesion, ...]:
    if count == 0:
        return ()
    if layout == "both":
        n_left = 1 if count == 2 else int(rng.integers(1, 3))
        sides = ["left"] * n_left + ["right"] * (count - n_left)
    else:
        sides = [layout] * count
    lesions = []
    for side in ("left", "right"):
        k = sides.count(side)
        for slot in sorted(rng.choice(3, size=k, replace=False).tolist()):
            lo, hi = _SLOT_X_LEFT[slot]
            x = float(rng.uniform(lo, hi))
            lesions.append(
                Lesion(side, size, brightness, x if side == "left" else 1.0 - x, _SLOT_Y[slot], LESION_RADIUS[size])
            )
    return tuple(lesions)


def sample_findings(n: int, rng: np.random.Generator) -> list[Findings]:
    """``n`` findings with balanced modality, organ, lesion count (0-3), layout (per count), size and brightness."""
    modality = T.balanced(rng, n, T.MODALITIES)
    organ = T.balanced(rng, n, T.ORGANS)
    count = T.balanced(rng, n, (0, 1, 2, 3))
    layout = T.stratified(rng, [c or None for c in count], lambda c: T.SIDES if c == 1 else T.LAYOUTS)
    size = T.stratified(rng, [c or None for c in count], lambda c: T.SIZES)
    bright = T.stratified(rng, [c or None for c in count], lambda c: T.BRIGHTNESSES)
    return [
        Findings(modality[i], organ[i], _place_lesions(rng, count[i], layout[i], size[i], bright[i]), layout[i])
        for i in range(n)
    ]


# --------------------------------------------------------------------------- rendering


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size, dtype=np.float64) + 0.5) / size
    return np.meshgrid(c, c)  # xx, yy: (size, size), fractions of the side


def _superellipse(xx, yy, cx, cy, a, b, p, size) -> np.ndarray:
    """Soft (1-pixel anti-aliased) mask in [0, 1] of |dx/a|^p + |dy/b|^p <= 1. Shape (size, size)."""
    s = (np.abs((xx - cx) / a) ** p + np.abs((yy - cy) / b) ** p) ** (1.0 / p)
    return np.clip((1.0 - s) * min(a, b) * size + 0.5, 0.0, 1.0)


def _paint(img: np.ndarray, mask: np.ndarray, value) -> np.ndarray:
    return img * (1.0 - mask) + value * mask


def _smooth_noise(rng: np.random.Generator, size: int, cells: int = 6) -> np.ndarray:
    """Low-frequency noise with unit-ish amplitude, (size, size), by bilinear upsampling of a coarse grid."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.BILINEAR), dtype=np.float64)


_ORGAN_SHAPES = {
    "brain": [(0.5, 0.5, 0.36, 0.38)],
    "lungs": [(0.29, 0.48, 0.16, 0.32), (0.71, 0.48, 0.16, 0.32)],
    "liver": [(0.37, 0.42, 0.25, 0.23)],
    "kidneys": [(0.30, 0.58, 0.09, 0.15), (0.70, 0.58, 0.09, 0.15)],
}
"""Organ ellipses (cx, cy, rx, ry) as fractions of the image side."""


def render_phantom(findings: Findings, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a phantom. Returns a grayscale uint8 array of shape (size, size)."""
    xx, yy = _grid(size)
    organ = np.zeros((size, size))
    for cx, cy, rx, ry in _ORGAN_SHAPES[findings.organ]:
        organ = np.maximum(organ, _superellipse(xx, yy, cx, cy, rx, ry, 2.0, size))
    if findings.modality == "X-ray":
        band = np.clip((0.46 - np.abs(xx - 0.5)) * size + 0.5, 0.0, 1.0)
        profile = 150.0 + 30.0 * (1.0 - ((xx - 0.5) / 0.46) ** 2)
        img = _paint(np.full((size, size), 25.0), band, profile)
        img = _paint(img, organ, 90.0)
        img = _paint(img, np.clip((0.035 - np.abs(xx - 0.5)) * size + 0.5, 0.0, 1.0), 225.0)
        img += rng.normal(0.0, 3.0, (size, size)) * band
    else:
        p = 3.0 if findings.organ == "brain" else 4.0
        body = _superellipse(xx, yy, 0.5, 0.5, 0.47, 0.46, p, size)
        if findings.modality == "CT":
            img = _paint(np.zeros((size, size)), body, 100.0)
            inner = _superellipse(xx, yy, 0.5, 0.5, 0.435, 0.425, p, size)
            img = _paint(img, np.clip(body - inner, 0.0, 1.0), 235.0)
            img = _paint(img, organ, 140.0)
            img += rng.normal(0.0, 6.0, (size, size)) * inner
        else:  # MRI
            img = _paint(np.full((size, size), 14.0), body, 80.0)
            img = _paint(img, organ, 170.0)
            img = img * (1.12 - 0.24 * yy) + 10.0 * _smooth_noise(rng, size) * body
    for les in findings.lesions:
        d = np.hypot(xx - les.cx, yy - les.cy)
        img = _paint(img, np.clip((les.radius - d) * size + 0.5, 0.0, 1.0), LESION_VALUE[les.brightness])
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- records and files


@dataclass
class Phantom:
    """One generated phantom: its findings, its pixels (size, size) uint8, and its dialogue record."""

    findings: Findings
    pixels: np.ndarray
    record: Dialogue = field(repr=False)


def _split_sizes(n: int, split: Sequence[float]) -> list[int]:
    """Records per split: floors of ``n * fraction``, the rest to the largest remainders (earlier split on ties)."""
    exact = [n * f for f in split]
    sizes = [int(np.floor(x + 1e-9)) for x in exact]
    for k in sorted(range(len(split)), key=lambda k: (-(exact[k] - sizes[k]), k))[: n - sum(sizes)]:
        sizes[k] += 1
    return sizes


def _check_split(split: Sequence[float]) -> tuple[float, float, float]:
    split = tuple(float(x) for x in split)
    if len(split) != 3 or any(x < 0 for x in split) or abs(sum(split) - 1.0) > 1e-6:
        raise UserInputError(f"split must be three non-negative fractions for train,validation,test that sum to 1, got {split}")
    return split  # type: ignore[return-value]


def make_phantoms(
    n: int,
    seed: int = 0,
    size: int = 64,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    question_kinds: Sequence[str] = DEFAULT_KINDS,
) -> list[Phantom]:
    """Build ``n`` phantoms in memory (records name their image ``images/phantom-NNNNN.png``).

    Each split is sampled and planned on its own, so the answer balance holds within every split
    (the test split included), not only over the whole set. Records come in split order.
    """
    if n < 1:
        raise UserInputError(f"n must be at least 1, got {n}")
    if not 16 <= size <= 1024:
        raise UserInputError(f"size must be between 16 and 1024 pixels, got {size}")
    split = _check_split(split)
    kinds = T.check_kinds(question_kinds)
    rng = np.random.default_rng(seed)
    findings: list[Findings] = []
    turns: list[list[Turn]] = []
    splits: list[str] = []
    for name, m in zip(SPLITS, _split_sizes(n, split)):  # each split balanced on its own
        f_split = sample_findings(m, rng)
        findings += f_split
        turns += plan_turns(f_split, rng, kinds)
        splits += [name] * m
    width = max(5, len(str(n - 1)))
    out = []
    for i, f in enumerate(findings):
        num = f"{i:0{width}d}"
        meta = f.to_meta(size) | {"seed": seed, "question_kinds": list(kinds)}
        rec = Dialogue(f"{SOURCE}/s{seed}-{num}", f"images/phantom-{num}.png", turns[i], SOURCE, splits[i], f.summary(), meta)
        out.append(Phantom(f, render_phantom(f, size, np.random.default_rng([seed, i])), rec))
    return out


def generate_phantoms(
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    size: int = 64,
    *,
    question_kinds: Sequence[str] = DEFAULT_KINDS,
) -> dict[str, Path]:
    """Write ``out_dir/images/*.png`` and ``out_dir/{train,validation,test}.jsonl``; return {split: jsonl path}.

    Deterministic: the same arguments give byte-identical files. A split with no records gets an
    empty file. Existing files of the same names are overwritten; other files are left alone.
    ``question_kinds`` picks the kinds asked (from ``ALL_KINDS``; default ``DEFAULT_KINDS``).
    """
    out_dir = Path(out_dir)
    phantoms = make_phantoms(n, seed, size, split, question_kinds)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    for ph in phantoms:
        Image.fromarray(np.repeat(ph.pixels[:, :, None], 3, axis=2)).save(out_dir / ph.record.image, format="PNG")
    paths = {}
    for s in SPLITS:
        paths[s] = out_dir / f"{s}.jsonl"
        write_jsonl(paths[s], (ph.record for ph in phantoms if ph.record.split == s))
    return paths
