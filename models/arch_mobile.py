"""Networks with BatchNorm and shortcuts for costing: MobileNet V1/V2, ResNet-18.

* MobileNet V1 (Howard et al. 2017, width 1.0, 224x224): 569 M MACs, 4.2 M parameters.
* MobileNet V2 (Sandler et al. 2018, width 1.0, 224x224): 300 M MACs, 3.5 M parameters.
* ResNet-18 (He et al. 2016, 224x224): 1.81 G MACs, 11.7 M parameters.

Architectures are exported with constant folding in eval mode, so their BatchNorms are
folded into the convolutions in the ONNX (as a deployed model would be); the trained
digits models keep their BatchNormalization nodes instead.
"""

from __future__ import annotations

from torch import nn

from hwcc.models.registry import register


def conv_bn(
    cin: int,
    cout: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    act: type[nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    """Conv (no bias, "same" padding for odd kernels) + BatchNorm (+ activation)."""
    layers = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


# MobileNet V1 body after the stem: (output channels, stride) of each separable block.
_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
              (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))  # fmt: skip


@register(
    "mobilenet_v1",
    description="MobileNet V1 1.0 (depthwise-separable convs), 224x224, 569 M MACs",
    input_shapes={"input": (1, 3, 224, 224)},
)
def mobilenet_v1() -> nn.Module:
    """MobileNet V1: 3x3/2 stem, 13 depthwise-separable blocks, pool, FC 1000."""
    layers = [conv_bn(3, 32, 3, 2)]
    channels = 32
    for cout, stride in _V1_BLOCKS:
        layers += [
            conv_bn(channels, channels, 3, stride, groups=channels),
            conv_bn(channels, cout, 1),
        ]
        channels = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 1000))


class InvertedResidual(nn.Module):
    """MobileNet V2 block: 1x1 expand, 3x3 depthwise, linear 1x1 project (+ shortcut).

    Args:
        cin: input channels.
        cout: output channels.
        stride: stride of the depthwise conv.
        expand: expansion ratio t (1 skips the expand conv).
        act: activation after the expand and depthwise convs (the paper's ReLU6).
    """

    def __init__(
        self, cin: int, cout: int, stride: int, expand: int, act: type[nn.Module] = nn.ReLU6
    ):
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn(cin, hidden, 1, act=act)] if expand != 1 else []
        layers += [
            conv_bn(hidden, hidden, 3, stride, groups=hidden, act=act),
            conv_bn(hidden, cout, 1, act=None),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


# MobileNet V2 Table 2: (expansion t, channels c, repeats n, first stride s).
_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip


@register(
    "mobilenet_v2",
    description="MobileNet V2 1.0 (inverted residuals), 224x224, 300 M MACs",
    input_shapes={"input": (1, 3, 224, 224)},
)
def mobilenet_v2() -> nn.Module:
    """MobileNet V2 as in Table 2 of the paper, with a 1280-channel last conv."""
    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=nn.ReLU6)]
    channels = 32
    for t, c, n, s in _V2_SETTINGS:
        for i in range(n):
            layers.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
            channels = c
    layers.append(conv_bn(channels, 1280, 1, act=nn.ReLU6))
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(1280, 1000),
    )


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN, identity or 1x1-projection shortcut, ReLU.

    Args:
        cin: input channels.
        cout: output channels.
        stride: stride of the first conv (and of the projection).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, act=None))
        self.shortcut = (
            conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()
        )
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


def resnet(
    stage_blocks: tuple[int, ...],
    widths: tuple[int, ...],
    in_channels: int,
    stem: nn.Module,
    num_classes: int,
) -> nn.Sequential:
    """A basic-block ResNet.

    Args:
        stage_blocks: blocks per stage.
        widths: channels per stage; every stage after the first downsamples by 2.
        in_channels: channels coming out of ``stem``.
        stem: the layers before the first stage.
        num_classes: outputs of the final FC.

    Returns:
        The network as an ``nn.Sequential``.
    """
    layers = [stem]
    channels = in_channels
    for stage, (blocks, width) in enumerate(zip(stage_blocks, widths)):
        for i in range(blocks):
            layers.append(BasicBlock(channels, width, 2 if stage > 0 and i == 0 else 1))
            channels = width
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)
    )


@register(
    "resnet18",
    description="ResNet-18 (basic blocks, 1x1 projection shortcuts), 224x224",
    input_shapes={"input": (1, 3, 224, 224)},
)
def resnet18() -> nn.Module:
    """ResNet-18: 7x7/2 stem, max-pool, four stages of two basic blocks, FC 1000."""
    stem = nn.Sequential(conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, padding=1))
    return resnet((2, 2, 2, 2), (64, 128, 256, 512), 64, stem, 1000)
