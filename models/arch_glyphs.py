"""Networks trained on the bundled 32x32 glyphs (``kind="trained"``).

Their trained ONNX files ship in ``models/data/<name>.onnx`` (``train_glyphs.py`` makes
them, with their accuracies and measured latencies in ``zoo_glyphs.json``). Both take
``input`` float32 ``[1, 1, 32, 32]`` (pixels scaled to 0..1) and return ``logits``
``[1, 10]`` (A..J), and keep their ``BatchNormalization`` nodes in the ONNX.

Their widths are chosen so that onnxruntime's time on one CPU thread is mostly
arithmetic: the share of the latency that does not scale with the work (per-kernel and
per-run overhead), measured against the same graph with every layer at 1 channel and 1x1
(:func:`overhead_probe`), is recorded in ``zoo_glyphs.json`` and stays under 20 %. After
onnxruntime's fusions the probe runs the same Conv kernels (BatchNorm, activations and
residual Adds fused into them) plus some 1x1 layout reorders the full network does not
need, so the recorded share is if anything too high.

* ``mobilenet-glyphs``: MobileNetV2-style, a 3x3 stem (32), ten inverted residuals
  (expansion 6, ReLU6) of 16, 24, 32, 64 and 96 channels at 32, 16, 8, 4 and 4 px, a 1x1
  conv to 256, pool, FC 10: 279 K parameters, about 0.17 ms here.
* ``resnet-glyphs``: ResNet-style, a 3x3 stem and three stages of two basic blocks at 16,
  32 and 64 channels (32, 16 and 8 px), 1x1 projection shortcuts, pool, FC 10: 175 K
  parameters, about 0.24 ms here.
"""

from __future__ import annotations

from torch import nn

from hwcc.models.arch_mobile import InvertedResidual, conv_bn, resnet
from hwcc.models.registry import register

GLYPHS_INPUT = (1, 1, 32, 32)
PROBE_INPUT = (1, 1, 1, 1)
_TRAINED = {
    "kind": "trained",
    "input_shapes": {"input": GLYPHS_INPUT},
    "output_names": ("logits",),
}

# (expansion t, channels c, repeats n, first stride s), as in MobileNet V2's Table 2.
MOBILENET_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 3, 2), (6, 96, 1, 1))
MOBILENET_STEM, MOBILENET_LAST = 32, 256
RESNET_BLOCKS, RESNET_WIDTHS = (2, 2, 2), (16, 32, 64)


def _mobilenet(probe: bool) -> nn.Sequential:
    width = (lambda c: 1) if probe else (lambda c: c)
    layers: list[nn.Module] = [conv_bn(1, width(MOBILENET_STEM), 3, act=nn.ReLU6)]
    channels = MOBILENET_STEM
    for t, c, n, s in MOBILENET_SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            block = InvertedResidual(width(channels), width(c), stride, 1 if probe else t)
            if probe and t != 1:  # keep the expand conv: the same kernels at width 1
                block.body = nn.Sequential(conv_bn(1, 1, 1, act=nn.ReLU6), *block.body)
            block.residual = stride == 1 and channels == c  # as at full width
            layers.append(block)
            channels = c
    layers.append(conv_bn(width(channels), width(MOBILENET_LAST), 1, act=nn.ReLU6))
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width(MOBILENET_LAST), 10),
    )


def _resnet(probe: bool) -> nn.Sequential:
    widths = tuple(1 for _ in RESNET_WIDTHS) if probe else RESNET_WIDTHS
    return resnet(RESNET_BLOCKS, widths, widths[0], conv_bn(1, widths[0], 3), num_classes=10)


def overhead_probe(name: str) -> nn.Module:
    """The network ``name`` with every layer at 1 channel, for an input of 1x1 pixel.

    It runs the same kernels as the full network (the same convolutions, BatchNorms,
    activations, residual Adds, pooling and FC) with next to no arithmetic, so its
    latency is the overhead the full network pays for its number of kernels.

    Args:
        name: ``"mobilenet-glyphs"`` or ``"resnet-glyphs"``.

    Returns:
        The probe network (input ``[1, 1, 1, 1]``, output ``[1, 10]``).
    """
    return {"mobilenet-glyphs": _mobilenet, "resnet-glyphs": _resnet}[name](probe=True)


@register(
    "mobilenet-glyphs",
    description="MobileNetV2-style CNN (inverted residuals, BN) on 32x32 glyphs A-J",
    **_TRAINED,
)
def mobilenet_glyphs() -> nn.Module:
    """3x3 stem (32), ten inverted-residual blocks (16 to 96), 1x1 to 256, pool, FC 10."""
    return _mobilenet(probe=False)


@register(
    "resnet-glyphs",
    description="ResNet-style CNN (basic blocks, BN, 1x1 projections) on 32x32 glyphs A-J",
    **_TRAINED,
)
def resnet_glyphs() -> nn.Module:
    """3x3 stem (16), stages of two basic blocks at 16, 32, 64 channels, pool, FC 10."""
    return _resnet(probe=False)
