"""Files that are not models: a named pipe refused without blocking, a device, a file
beyond protobuf's limit refused before reading, paths the file system cannot take, and
random bytes; and saving applies the umask and leaves no temporary file."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hostile_models import make_model, refused, write
from onnx import helper

import hwcc


# ---------------------------------------------------------------- files that are not models
def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "m.onnx"
    os.mkfifo(fifo)

    def unblock():  # if load blocked on the pipe, give it an end so the test fails, not hangs
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass

    timer = threading.Timer(5, unblock)
    timer.start()
    try:
        start = time.perf_counter()
        refused(fifo, r"m.onnx is not a regular file \(a named pipe\)")
        assert time.perf_counter() - start < 2
    finally:
        timer.cancel()


def test_a_device_is_refused():
    refused(Path(os.devnull), r"is not a regular file \(a character device\)")


def test_a_file_beyond_protobufs_limit_is_refused_before_reading(tmp_path):
    big = tmp_path / "big.onnx"
    with open(big, "wb") as f:
        f.truncate(3 * 2**30)  # sparse: no disk space, no reading
    refused(big, "more than protobuf's 2 GB limit")


@pytest.mark.parametrize(
    "path, match",
    [
        ("m\0.onnx", "embedded null byte"),
        ("a" * 5000 + ".onnx", "File name too long"),
    ],
    ids=["nul", "too-long"],
)
def test_model_paths_the_file_system_cannot_take(tmp_path, path, match):
    refused(str(tmp_path / path), match)


def test_random_bytes_are_not_a_model(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    refused(write(tmp_path, data), "not .*ONNX model")


# ---------------------------------------------------------------- saving
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_save_applies_the_umask(tmp_path, umask, mode):
    g = hwcc.load(make_model([helper.make_node("Relu", ["x"], ["y"])]))
    old = os.umask(umask)
    try:
        out = hwcc.save(g, tmp_path / "out.onnx")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir()] == ["out.onnx"]  # no temporary file left
