"""Writes ``models/data/glyphs.npz``: the letters A-J rendered from fonts at 32x32.

Run by a maintainer (``python -m hwcc.models.make_glyphs_data``) on a machine with the
DejaVu fonts (Debian/Ubuntu ``fonts-dejavu-core`` and ``fonts-dejavu-extra``) and Pillow;
the result is committed, so neither is needed at run time. In the spirit of notMNIST
(Bulatov 2011), whose ten classes are the letters A-J drawn in many fonts: ten classes,
so that the glyphs models and the digits models have the same output layout, and each
class gets 500 samples in a file under 3 MB.

Every sample is drawn by :func:`render_sample` from its own generator,
``numpy.random.default_rng([SEED, index])``, so any slice can be regenerated on its own.
The glyph is rendered large, its ink cropped, and then, at 4x supersampling:

* stroke weight: one 3x3 min filter (thinner), or one or two 5x5 max filters (bolder);
* an affine map: glyph height 50-95 % of the image, aspect 0.8-1.2, rotation up to 15
  degrees, shear up to 0.3, and a random shift that keeps most of the glyph inside;
* a distractor stroke (a line across the image) in about half of the samples;
* downsampled to 32x32, then blurred (Gaussian, radius 0-1 px), with a random
  contrast, background level, and Gaussian pixel noise (sigma 0-10 of 255), stored
  with 64 gray levels (a multiple of 255/63), which keeps the file under 3 MB.

The split is by font: the ``TEST_FONTS`` are never seen in training, so the test split
measures how well a network generalises to unseen type designs. Each font gets the same
number of samples of each letter (the split is stratified by class and by font).
The file holds ``images`` (uint8 ``[5000, 32, 32]``, ink bright on dark), ``labels``
(int64, 0..9 for A..J), ``fonts`` (int64 index into ``font_names``), ``font_names`` and
``pillow_version`` (the Pillow, and so the FreeType, that drew them: another version may
anti-alias differently).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from hwcc.models.glyphs import GLYPHS_FILE, LETTERS, SIZE, TEST_FONTS, TRAIN_FONTS

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
SEED = 20240
PER_FONT_CLASS_TRAIN = 25  # 16 fonts x 10 letters x 25 = 4000 train samples
PER_FONT_CLASS_TEST = 20  # 5 fonts x 10 letters x 20 = 1000 test samples
_SUPER = 4  # supersampling factor of the geometric steps
_RENDER_PX = 96  # font size of the master rendering
_PAD = 6  # room around a master glyph for bolder strokes
LEVELS = 64  # gray levels stored (the noise makes the file large at 256)


def sample_plan() -> list[tuple[int, int]]:
    """``(font index, label)`` of every sample in file order: train fonts first."""
    plan = []
    for font_index, _ in enumerate(TRAIN_FONTS + TEST_FONTS):
        per = PER_FONT_CLASS_TRAIN if font_index < len(TRAIN_FONTS) else PER_FONT_CLASS_TEST
        plan += [(font_index, label) for label in range(len(LETTERS)) for _ in range(per)]
    return plan


def _master(font_file: str, letter: str):
    """The letter rendered white on black at ``_RENDER_PX``, cropped to its ink."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(FONT_DIR / font_file), _RENDER_PX)
    canvas = Image.new("L", (2 * _RENDER_PX, 2 * _RENDER_PX), 0)
    ImageDraw.Draw(canvas).text((_RENDER_PX // 2, _RENDER_PX // 4), letter, fill=255, font=font)
    return canvas.crop(canvas.getbbox())


def _weighted(glyph, weight: int):
    """``glyph`` padded by ``_PAD`` and made thinner (``weight`` < 0) or bolder (> 0)."""
    from PIL import Image, ImageFilter

    glyph = Image.fromarray(np.pad(np.asarray(glyph), _PAD))
    for _ in range(abs(weight)):
        glyph = glyph.filter(ImageFilter.MaxFilter(5) if weight > 0 else ImageFilter.MinFilter(3))
    return glyph


def _place(glyph, a: np.ndarray, centre: np.ndarray, big: int):
    """``glyph`` mapped by the 2x2 matrix ``a`` about its centre onto ``centre`` of a
    ``big`` x ``big`` canvas (bilinear)."""
    from PIL import Image

    inverse = np.linalg.inv(a)
    offset = np.array([glyph.width / 2, glyph.height / 2]) - inverse @ centre
    coeffs = (*inverse[0], offset[0], *inverse[1], offset[1])
    return glyph.transform((big, big), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)


def render_sample(font_file: str, label: int, index: int, seed: int = SEED) -> np.ndarray:
    """Renders sample ``index`` (a ``label`` glyph of ``font_file``) as uint8 32x32.

    Args:
        font_file: file name under :data:`FONT_DIR`.
        label: 0..9 for A..J.
        index: the sample's position in the file; with ``seed`` it seeds the sample's
            generator.
        seed: the data set's seed.

    Returns:
        uint8 ``[32, 32]``.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([seed, index])
    weight = int(rng.choice([-1, 0, 0, 1, 2]))  # erode (3x3) or dilate (5x5) steps
    glyph = _weighted(_master(font_file, LETTERS[label]), weight)

    big = SIZE * _SUPER
    scale = rng.uniform(0.5, 0.95) * big / (glyph.height - 2 * _PAD)
    angle = math.radians(rng.uniform(-15, 15))
    cos, sin = math.cos(angle), math.sin(angle)
    rotate_shear = np.array([[cos, -sin], [sin, cos]]) @ np.array(
        [[1, rng.uniform(-0.3, 0.3)], [0, 1]]
    )
    a = rotate_shear @ np.diag([scale * rng.uniform(0.8, 1.2), scale])
    half_w, half_h = np.abs(a) @ np.array([glyph.width / 2, glyph.height / 2])
    slack = np.maximum(0.0, big / 2 - np.array([half_w, half_h]) * 0.8)
    centre = big / 2 + rng.uniform(-1, 1, size=2) * slack
    image = np.asarray(_place(glyph, a, centre, big), dtype=np.float64)

    if rng.random() < 0.6:  # a neighbouring letter of the same font, partly in view
        side = rng.choice([-1.0, 1.0])
        other = _weighted(_master(font_file, chr(ord("A") + int(rng.integers(26)))), weight)
        gap = (glyph.width + other.width) / 2 - 2 * _PAD + rng.uniform(0.05, 0.3) * glyph.height
        neighbour = _place(other, a, centre + side * (a @ np.array([gap, 0.0])), big)
        image = np.maximum(image, np.asarray(neighbour, dtype=np.float64))
    image = Image.fromarray(image.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.choice([0, 0, 1, 2]))):  # distractor strokes across the image
        ends = tuple(rng.uniform(0, big, size=4))
        draw.line(
            ends, fill=int(rng.integers(128, 256)), width=int(rng.integers(2, 2 * _SUPER + 1))
        )
    if rng.random() < 0.3:  # an occluder the colour of the background
        w, h = rng.uniform(0.2, 0.45, size=2) * big
        x, y = rng.uniform(0, big - w), rng.uniform(0, big - h)
        draw.rectangle((x, y, x + w, y + h), fill=0)

    image = image.resize((SIZE, SIZE), Image.Resampling.BOX)
    from PIL import ImageFilter

    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 1.0))))
    pixels = np.asarray(image, dtype=np.float64) / 255.0
    low = rng.uniform(0.0, 0.3)
    high = rng.uniform(0.6, 1.0)
    pixels = low + (high - low) * pixels + rng.normal(0.0, rng.uniform(0, 10 / 255), pixels.shape)
    levels = np.round(np.clip(pixels, 0.0, 1.0) * (LEVELS - 1))  # fewer levels, smaller file
    return np.round(levels * 255 / (LEVELS - 1)).astype(np.uint8)


def render_all(indices: list[int] | None = None, seed: int = SEED) -> np.ndarray:
    """Renders the samples at ``indices`` (all if None), uint8 ``[N, 32, 32]``."""
    plan = sample_plan()
    fonts = TRAIN_FONTS + TEST_FONTS
    chosen = range(len(plan)) if indices is None else indices
    return np.stack([render_sample(fonts[plan[i][0]], plan[i][1], i, seed) for i in chosen])


def make(path: Path = GLYPHS_FILE) -> Path:
    """Renders every sample and writes them compressed to ``path``.

    Returns:
        The path written.
    """
    fonts = TRAIN_FONTS + TEST_FONTS
    missing = [f for f in fonts if not (FONT_DIR / f).is_file()]
    if missing:
        raise FileNotFoundError(f"fonts not found under {FONT_DIR}: {', '.join(missing)}")
    import PIL

    plan = np.array(sample_plan(), dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        images=render_all(seed=SEED),
        labels=plan[:, 1],
        fonts=plan[:, 0],
        font_names=np.array(fonts),
        pillow_version=np.array(PIL.__version__),
    )
    return path


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=GLYPHS_FILE, help="output .npz")
    args = parser.parse_args(argv)
    print(f"wrote {make(args.out)}")


if __name__ == "__main__":
    main()
