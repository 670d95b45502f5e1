"""Small networks trained on the bundled 8x8 digits (``kind="trained"``).

Their trained ONNX files ship in ``models/data/<name>.onnx`` (``train_digits.py`` makes
them). All take ``input`` float32 ``[1, 1, 8, 8]`` (pixels scaled to 0..1) and return
``logits`` ``[1, 10]``. The BatchNorm models keep their ``BatchNormalization`` nodes in the
ONNX so that BN folding has real test cases.

* ``lenet300-digits``: 64-300-100-10 MLP.
* ``lenet5-digits``: LeNet-5 adapted to 8x8 ("same" 5x5 convs, one pool); 2.0 M MACs, most
  of them in conv2, so pruning its channels shows on measured CPU latency.
* ``mobilenet-digits``: inverted-residual depthwise-separable blocks, BN, residual Adds.
* ``resnet-digits``: basic blocks with BN and residual Adds, one stride-2 block with a
  1x1 projection shortcut.
"""

from __future__ import annotations

from torch import nn

from hwcc.models.arch_mobile import InvertedResidual, conv_bn, resnet
from hwcc.models.registry import register

_DIGITS_INPUT = {"input": (1, 1, 8, 8)}
_TRAINED = {"kind": "trained", "input_shapes": _DIGITS_INPUT, "output_names": ("logits",)}


@register("lenet300-digits", description="LeNet-300-100 MLP trained on 8x8 digits", **_TRAINED)
def lenet300_digits() -> nn.Module:
    """Flatten 64 -> 300 -> 100 -> 10 with ReLU."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 300),
        nn.ReLU(),
        nn.Linear(300, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


@register(
    "lenet5-digits",
    description="LeNet-5 style CNN (conv20-conv50-pool-fc500) trained on 8x8 digits",
    **_TRAINED,
)
def lenet5_digits() -> nn.Module:
    """conv 20@5x5 pad 2, conv 50@5x5 pad 2, max-pool 2, FC 500, FC 10 (ReLU between)."""
    return nn.Sequential(
        nn.Conv2d(1, 20, 5, padding=2),
        nn.ReLU(),
        nn.Conv2d(20, 50, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(50 * 4 * 4, 500),
        nn.ReLU(),
        nn.Linear(500, 10),
    )


@register(
    "mobilenet-digits",
    description="MobileNetV2-style CNN (BN, depthwise, residual Adds) on 8x8 digits",
    **_TRAINED,
)
def mobilenet_digits() -> nn.Module:
    """3x3 stem (32), four inverted-residual blocks (t=2, ReLU), pool, FC 10."""
    return nn.Sequential(
        conv_bn(1, 32, 3),
        InvertedResidual(32, 32, 1, 2, act=nn.ReLU),
        InvertedResidual(32, 64, 2, 2, act=nn.ReLU),
        InvertedResidual(64, 64, 1, 2, act=nn.ReLU),
        InvertedResidual(64, 64, 1, 2, act=nn.ReLU),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


@register(
    "resnet-digits",
    description="Small ResNet (BN, basic blocks, 1x1 projection) on 8x8 digits",
    **_TRAINED,
)
def resnet_digits() -> nn.Module:
    """3x3 stem (32), two basic blocks at 32, one stride-2 block to 64, pool, FC 10."""
    return resnet((2, 1), (32, 64), 32, conv_bn(1, 32, 3), num_classes=10)
