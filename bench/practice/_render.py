"""Rendered images for the practice models: text lines, document pages, captchas, scenes.

Everything is drawn with Pillow from the system's TrueType fonts (DejaVu, Liberation when
present) and a ``numpy.random.Generator``, so the same seed draws the same pixels. Images
are RGB ``uint8`` arrays ``[H, W, 3]``; :mod:`bench.practice.inputs` turns them into each
model's input the way its package does.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from hwcc.errors import HwccError

FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation")
WORDS = (
    "the invoice total amount due date account number order shipped received payment "
    "customer address phone street city report page section table figure summary "
    "results method data model value price quantity item delivery office monday "
    "january april october north south station public library market river"
).split()
CAPTCHA_CHARS = "abcdefghjkmnpqrstuvwxyz23456789ABCDEFGHJKLMNPQRSTUVWXYZ"


@functools.cache
def font_files() -> tuple[Path, ...]:
    """The upright text fonts found on this machine (no symbol or math faces).

    Raises:
        HwccError: no TrueType font in :data:`FONT_DIRS`.
    """
    found = []
    for d in FONT_DIRS:
        found += [
            p
            for p in sorted(Path(d).glob("*.ttf"))
            if not any(s in p.name for s in ("Math", "ExtraLight", "Oblique", "Italic"))
        ]
    if not found:
        raise HwccError(
            f"no TrueType fonts in {', '.join(FONT_DIRS)}: the practice images need them",
            "install fonts-dejavu-core (apt-get install fonts-dejavu-core)",
        )
    return tuple(found)


@functools.cache
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def random_font(rng: np.random.Generator, size: int) -> ImageFont.FreeTypeFont:
    """A font from :func:`font_files`, chosen by ``rng``, at ``size`` pixels."""
    files = font_files()
    return _font(files[int(rng.integers(len(files)))], int(size))


def random_text(rng: np.random.Generator, words: tuple[int, int] = (2, 6)) -> str:
    """A line of words and numbers, like a line in a document."""
    out = []
    for _ in range(int(rng.integers(words[0], words[1] + 1))):
        r = rng.random()
        if r < 0.15:
            out.append(str(int(rng.integers(1, 99999))))
        elif r < 0.25:
            out.append(f"{int(rng.integers(1, 31)):02d}/{int(rng.integers(1, 13)):02d}")
        else:
            w = WORDS[int(rng.integers(len(WORDS)))]
            out.append(w.capitalize() if rng.random() < 0.2 else w)
    return " ".join(out)


def _paper(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(225, 256, 3))


def _ink(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 70, 3))


def text_line(rng: np.random.Generator, height: int = 48) -> np.ndarray:
    """A tight crop of one rendered line of text, like a detector's crop, ``[h, w, 3]``."""
    font = random_font(rng, height * rng.uniform(0.55, 0.75))
    text = random_text(rng)
    left, top, right, bottom = font.getbbox(text)
    pad = int(rng.integers(2, 6))
    img = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), _paper(rng))
    ImageDraw.Draw(img).text((pad - left, pad - top), text, font=font, fill=_ink(rng))
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.8)))
    return _noisy(np.asarray(img), rng, 6.0)


def document_page(rng: np.random.Generator, size: tuple[int, int] = (600, 800)) -> np.ndarray:
    """A portrait page ``size`` (w, h): a title, paragraphs of left-aligned lines, margins."""
    w, h = size
    img = Image.new("RGB", size, _paper(rng))
    draw = ImageDraw.Draw(img)
    margin = int(rng.integers(30, 60))
    y = margin
    title = random_font(rng, rng.integers(30, 40))
    draw.text((margin, y), random_text(rng, (2, 4)).title(), font=title, fill=_ink(rng))
    y += int(title.size * 1.8)
    body = random_font(rng, rng.integers(16, 24))
    ink = _ink(rng)
    while y < h - margin - body.size:
        for _ in range(int(rng.integers(3, 8))):
            if y >= h - margin - body.size:
                break
            line = random_text(rng, (4, 10))
            while body.getlength(line) > w - 2 * margin and " " in line:
                line = line.rsplit(" ", 1)[0]
            draw.text((margin, y), line, font=body, fill=ink)
            y += int(body.size * rng.uniform(1.3, 1.6))
        y += int(body.size * rng.uniform(0.8, 1.5))
    return _noisy(np.asarray(img), rng, 4.0)


def captcha(rng: np.random.Generator, size: tuple[int, int] = (180, 60)) -> np.ndarray:
    """A text captcha ``size`` (w, h): 4-6 jittered, rotated characters, noise lines, dots."""
    w, h = size
    top = np.array(rng.integers(150, 256, 3), dtype=np.float64)
    bottom = np.array(rng.integers(150, 256, 3), dtype=np.float64)
    ramp = np.linspace(0, 1, h)[:, None, None]
    bg = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (h, w, 3))
    img = Image.fromarray(bg.astype(np.uint8), "RGB")
    n = int(rng.integers(4, 7))
    step = (w - 16) / n
    for i in range(n):
        ch = CAPTCHA_CHARS[int(rng.integers(len(CAPTCHA_CHARS)))]
        font = random_font(rng, rng.integers(int(h * 0.55), int(h * 0.8)))
        tile = Image.new("RGBA", (h, h), (0, 0, 0, 0))
        colour = (*(int(v) for v in rng.integers(0, 140, 3)), 255)
        ImageDraw.Draw(tile).text((h // 2, h // 2), ch, font=font, fill=colour, anchor="mm")
        tile = tile.rotate(float(rng.uniform(-30, 30)), resample=Image.BICUBIC)
        x = int(8 + i * step + rng.uniform(-4, 4) + step / 2 - h / 2)
        img.paste(tile, (x, int(rng.uniform(-6, 6))), tile)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 5))):
        pts = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(2)]
        colour = tuple(int(v) for v in rng.integers(0, 200, 3))
        draw.line(pts, fill=colour, width=int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(50, 150))):
        x, y = int(rng.integers(w)), int(rng.integers(h))
        draw.point((x, y), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return np.asarray(img)


def click_scene(rng: np.random.Generator, size: tuple[int, int] = (384, 344)) -> np.ndarray:
    """A click-captcha scene ``size`` (w, h): a blurred photo-like background with 3-6 large
    characters scattered on it, each in a random colour, size and angle."""
    w, h = size
    coarse = rng.integers(40, 230, (4, 5, 3)).astype(np.uint8)
    img = Image.fromarray(coarse, "RGB").resize(size, Image.BICUBIC)
    img = img.filter(ImageFilter.GaussianBlur(6))
    for _ in range(int(rng.integers(3, 7))):
        s = int(rng.integers(36, 64))
        tile = Image.new("RGBA", (s * 2, s * 2), (0, 0, 0, 0))
        ch = CAPTCHA_CHARS[int(rng.integers(len(CAPTCHA_CHARS)))]
        colour = (*(int(v) for v in rng.integers(0, 256, 3)), 255)
        draw = ImageDraw.Draw(tile)
        draw.text((s, s), ch, font=random_font(rng, s), fill=colour, anchor="mm",
                  stroke_width=2, stroke_fill=(255, 255, 255, 255))  # fmt: skip
        tile = tile.rotate(float(rng.uniform(-40, 40)), resample=Image.BICUBIC)
        img.paste(tile, (int(rng.integers(0, w - s * 2)), int(rng.integers(0, h - s * 2))), tile)
    return _noisy(np.asarray(img), rng, 5.0)


def text_scene(rng: np.random.Generator, size: tuple[int, int] = (736, 736)) -> np.ndarray:
    """A scene for a text detector ``size`` (w, h): coloured panels and shapes with blocks
    of text lines (signs, labels, a paragraph) at several sizes and colours."""
    w, h = size
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(60, 200, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 7))):
        x0, y0 = int(rng.integers(0, w - 120)), int(rng.integers(0, h - 80))
        x1, y1 = x0 + int(rng.integers(100, 400)), y0 + int(rng.integers(60, 300))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.rectangle if rng.random() < 0.6 else draw.ellipse)((x0, y0, x1, y1), fill=fill)
    for _ in range(int(rng.integers(2, 5))):
        font = random_font(rng, rng.integers(14, 44))
        x, y = int(rng.integers(10, w // 2)), int(rng.integers(10, h - 60))
        paper = rng.random() < 0.5
        colour = _ink(rng) if paper else tuple(int(v) for v in rng.integers(0, 256, 3))
        for _ in range(int(rng.integers(1, 5))):
            line = random_text(rng, (1, 5))
            if paper:
                box = draw.textbbox((x, y), line, font=font)
                draw.rectangle((box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3), fill=_paper(rng))
            draw.text((x, y), line, font=font, fill=colour)
            y += int(font.size * 1.4)
            if y > h - font.size:
                break
    return _noisy(np.asarray(img), rng, 5.0)


def _noisy(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """``img`` with Gaussian pixel noise of ``sigma`` grey levels (a camera or a scanner)."""
    noise = rng.normal(0.0, sigma, img.shape)
    return np.clip(img.astype(np.float64) + noise, 0, 255).astype(np.uint8)


def resize(img: np.ndarray, size: tuple[int, int], resample: int = Image.BILINEAR) -> np.ndarray:
    """``img`` resized to ``size`` (w, h) with Pillow's ``resample`` filter."""
    return np.asarray(Image.fromarray(img).resize(size, resample))
