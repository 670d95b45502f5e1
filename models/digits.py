"""The bundled 8x8 handwritten digits and their fixed train/test split.

The data are the 1,797 8x8 digits of the UCI "Optical Recognition of Handwritten Digits"
set (Alpaydin & Kaynak 1998, CC BY 4.0), as redistributed by scikit-learn, stored in
``models/data/digits.npz`` as uint8 pixels on a 0..16 scale (see ``DIGITS_LICENSE.txt``;
``make_digits_data.py`` wrote the file once). scikit-learn is not needed at run time.

The split is stratified: within each class the samples are permuted with
``numpy.random.default_rng(0)`` and the first 20 % (rounded) go to the test split. Model
inputs are float32 ``[N, 1, 8, 8]`` scaled to 0..1.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from hwcc.errors import HwccError

DATA_DIR = Path(__file__).resolve().parent / "data"
DIGITS_FILE = DATA_DIR / "digits.npz"
SPLITS = ("train", "test")
SPLIT_SEED = 0
TEST_FRACTION = 0.2
PIXEL_MAX = 16.0


def load_raw() -> tuple[np.ndarray, np.ndarray]:
    """Loads the bundled digits as stored.

    Returns:
        ``(images, labels)``: uint8 ``[1797, 8, 8]`` on a 0..16 scale and int64 ``[1797]``.
    """
    with np.load(DIGITS_FILE) as data:
        return data["images"], data["labels"].astype(np.int64)


def split_indices(
    labels: np.ndarray, seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION
) -> dict[str, np.ndarray]:
    """Computes the stratified train/test split.

    Args:
        labels: class label of every sample.
        seed: seed of the ``numpy.random.default_rng`` that permutes each class.
        test_fraction: share of each class that goes to the test split.

    Returns:
        ``{"train": indices, "test": indices}``, each sorted ascending.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(len(members) * test_fraction))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Loads one split as model inputs.

    Args:
        split: ``"train"`` or ``"test"``.

    Returns:
        ``(x, y)``: float32 ``[N, 1, 8, 8]`` in 0..1 and int64 ``[N]`` labels.

    Raises:
        HwccError: ``split`` is not one of the two splits.
    """
    if split not in SPLITS:
        raise HwccError(f"unknown digits split {split!r}", hint=f"use one of: {', '.join(SPLITS)}")
    images, labels = load_raw()
    index = split_indices(labels)[split]
    x = (images[index].astype(np.float32) / PIXEL_MAX)[:, None, :, :]
    return x, labels[index]


def write_npz(split: str, path: str | os.PathLike, input_name: str = "input") -> Path:
    """Writes a split in hwcc's ``--data`` format: one array per model input, ``labels``.

    The file is written to a temporary name in the same folder and renamed into place.

    Args:
        split: ``"train"`` or ``"test"``.
        path: destination ``.npz`` file.
        input_name: name of the model input the images feed.

    Returns:
        The path written.
    """
    x, y = load_split(split)
    return save_split(x, y, path, input_name)


def save_split(
    x: np.ndarray, y: np.ndarray, path: str | os.PathLike, input_name: str = "input"
) -> Path:
    """``x`` and ``y`` as hwcc's ``--data`` file (``{input_name: x, "labels": y}``),
    written to a temporary name and renamed into place; the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{input_name: x, "labels": y})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def onnx_accuracy(onnx_path: str | os.PathLike, split: str = "test") -> float:
    """Top-1 accuracy of a digits classifier, run in onnxruntime one sample at a time.

    The zoo's digits models have a fixed batch of 1, so samples are fed singly.

    Args:
        onnx_path: model with one ``[1, 1, 8, 8]`` float input and ``[1, 10]`` output.
        split: which split to score.

    Returns:
        Fraction of samples whose arg-max output equals the label.
    """
    return top1_onnx(onnx_path, *load_split(split))


def top1_onnx(onnx_path: str | os.PathLike, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a batch-1 classifier on ``(x, y)`` in onnxruntime (one thread,
    one sample at a time)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    correct = sum(
        int(np.argmax(session.run(None, {input_name: x[i : i + 1]})[0]) == y[i])
        for i in range(len(y))
    )
    return correct / len(y)
