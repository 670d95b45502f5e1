"""Writes ``models/data/digits.npz`` from scikit-learn's bundled copy of the UCI digits.

Run once by a maintainer (``python -m hwcc.models.make_digits_data``); the result is
committed, so scikit-learn is never needed at run time. The file holds ``images`` (uint8
``[1797, 8, 8]``, 0..16, exactly the values scikit-learn ships) and ``labels`` (int64).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hwcc.models.digits import DIGITS_FILE


def make(path: Path = DIGITS_FILE) -> Path:
    """Extracts the digits and writes them compressed to ``path``.

    Args:
        path: destination ``.npz``.

    Returns:
        The path written.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images
    if images.min() < 0 or images.max() > 16 or not np.all(images == np.round(images)):
        raise ValueError("expected integer pixels on a 0..16 scale")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=images.astype(np.uint8), labels=bunch.target.astype(np.int64))
    return path


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DIGITS_FILE, help="output .npz")
    args = parser.parse_args(argv)
    print(f"wrote {make(args.out)}")


if __name__ == "__main__":
    main()
