"""The bundled 32x32 glyphs (letters A-J rendered from fonts) and their fixed split.

``models/data/glyphs.npz`` holds 5,000 grayscale 32x32 images of the letters A-J, drawn
by ``make_glyphs_data.py`` from 21 DejaVu fonts with random stroke weight, scale, aspect,
rotation, shear, shift, distractor strokes, blur, contrast and noise (see that module and
``GLYPHS_LICENSE.txt``). The split is by font: 16 fonts train (4,000 samples, 25 of each
letter per font), 5 unseen fonts test (1,000 samples, 20 of each letter per font), so the
test accuracy measures generalisation to type designs the network never saw.

Model inputs are float32 ``[N, 1, 32, 32]`` scaled to 0..1 (ink bright on dark), labels
int64 0..9 for A..J.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from hwcc.errors import HwccError
from hwcc.models.digits import save_split, top1_onnx

DATA_DIR = Path(__file__).resolve().parent / "data"
GLYPHS_FILE = DATA_DIR / "glyphs.npz"
SPLITS = ("train", "test")
LETTERS = "ABCDEFGHIJ"
SIZE = 32
PIXEL_MAX = 255.0
# Sorted file names under /usr/share/fonts/truetype/dejavu; every DejaVu face but the
# math font. The test fonts are one face of each family, never seen in training.
TEST_FONTS = (
    "DejaVuSans-ExtraLight.ttf",
    "DejaVuSansCondensed-Oblique.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerifCondensed-Bold.ttf",
)
TRAIN_FONTS = tuple(
    sorted(
        f"DejaVu{family}{style}.ttf"
        for family in ("Sans", "SansCondensed", "SansMono", "Serif", "SerifCondensed")
        for style in (
            ("", "-Bold", "-BoldOblique", "-Oblique")
            if family.startswith("Sans")
            else ("", "-Bold", "-BoldItalic", "-Italic")
        )
        if f"DejaVu{family}{style}.ttf" not in TEST_FONTS
    )
)
_REMAKE = "re-create it with `python -m hwcc.models.make_glyphs_data` (needs Pillow and fonts)"


def load_raw() -> dict[str, np.ndarray]:
    """Loads the bundled glyphs as stored.

    Returns:
        ``{"images", "labels", "fonts", "font_names"}``: uint8 ``[5000, 32, 32]``, int64
        ``[5000]`` labels (0..9), int64 ``[5000]`` font indices into ``font_names``.

    Raises:
        HwccError: the file is missing or unreadable.
    """
    try:
        with np.load(GLYPHS_FILE) as data:
            raw = {k: data[k] for k in ("images", "labels", "fonts", "font_names")}
    except FileNotFoundError:
        raise HwccError(f"the bundled glyphs file {GLYPHS_FILE} is missing", _REMAKE) from None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise HwccError(f"cannot read the bundled glyphs file {GLYPHS_FILE}: {exc}", _REMAKE)
    raw["labels"] = raw["labels"].astype(np.int64)
    raw["fonts"] = raw["fonts"].astype(np.int64)
    return raw


def split_indices(fonts: np.ndarray, font_names: np.ndarray) -> dict[str, np.ndarray]:
    """The split by font: samples of a ``TEST_FONTS`` face are test, the rest train.

    Args:
        fonts: font index of every sample.
        font_names: the file names the indices refer to.

    Returns:
        ``{"train": indices, "test": indices}``, each sorted ascending.
    """
    is_test = np.isin(np.asarray(font_names)[fonts], TEST_FONTS)
    return {"train": np.flatnonzero(~is_test), "test": np.flatnonzero(is_test)}


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Loads one split as model inputs.

    Args:
        split: ``"train"`` or ``"test"``.

    Returns:
        ``(x, y)``: float32 ``[N, 1, 32, 32]`` in 0..1 and int64 ``[N]`` labels.

    Raises:
        HwccError: ``split`` is not one of the two splits, or the file is unreadable.
    """
    if split not in SPLITS:
        raise HwccError(f"unknown glyphs split {split!r}", hint=f"use one of: {', '.join(SPLITS)}")
    raw = load_raw()
    index = split_indices(raw["fonts"], raw["font_names"])[split]
    x = (raw["images"][index].astype(np.float32) / PIXEL_MAX)[:, None, :, :]
    return x, raw["labels"][index]


def write_npz(split: str, path: str | os.PathLike, input_name: str = "input") -> Path:
    """Writes a split in hwcc's ``--data`` format (one array per input, ``labels``).

    Args:
        split: ``"train"`` or ``"test"``.
        path: destination ``.npz``, written to a temporary name and renamed into place.
        input_name: name of the model input the images feed.

    Returns:
        The path written.
    """
    x, y = load_split(split)
    return save_split(x, y, path, input_name)


def onnx_accuracy(onnx_path: str | os.PathLike, split: str = "test") -> float:
    """Top-1 accuracy of a glyphs classifier in onnxruntime (one thread, batch 1).

    Args:
        onnx_path: model with one ``[1, 1, 32, 32]`` float input and ``[1, 10]`` output.
        split: which split to score.

    Returns:
        Fraction of samples whose arg-max output equals the label.
    """
    return top1_onnx(onnx_path, *load_split(split))
