"""Multi-branch networks for costing: GoogLeNet (Inception v1) and SqueezeNet 1.1.

GoogLeNet follows Table 1 of Szegedy et al., "Going deeper with convolutions" (2015): the
"5x5" branch really uses 5x5 filters (torchvision's copy uses 3x3 there), LRN after the
stem, Caffe-style ceil-mode pooling, no auxiliary heads. Its MACs per stage match Table 1's
"ops" column within 1 % (except row 5a, whose listed 54 M exceeds the 51.1 M its own filter
counts give); in total 1.583 G against the column's 1.586 G (the paper's text rounds the
design budget to "1.5 billion multiply-adds").

SqueezeNet 1.1 follows the reference release (Iandola et al., 2016, v1.1 of the
DeepScale/SqueezeNet repository): 1.24 M parameters, 349 M MACs at 224x224.
"""

from __future__ import annotations

import torch
from torch import nn

from hwcc.models.layers import LRN
from hwcc.models.registry import register


def _conv_relu(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.ReLU())


class Inception(nn.Module):
    """One Inception v1 module: 1x1 | 1x1->3x3 | 1x1->5x5 | 3x3 max-pool->1x1, concatenated.

    Args:
        cin: input channels.
        c1: 1x1 branch channels ("#1x1" in Table 1).
        c3r: 3x3 reduce channels; c3: 3x3 channels.
        c5r: 5x5 reduce channels; c5: 5x5 channels.
        pool_proj: channels of the 1x1 after the max-pool.
    """

    def __init__(self, cin, c1, c3r, c3, c5r, c5, pool_proj):
        super().__init__()
        self.branch1 = _conv_relu(cin, c1, 1)
        self.branch3 = nn.Sequential(_conv_relu(cin, c3r, 1), _conv_relu(c3r, c3, 3, padding=1))
        self.branch5 = nn.Sequential(_conv_relu(cin, c5r, 1), _conv_relu(c5r, c5, 5, padding=2))
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d(3, 1, padding=1, ceil_mode=True), _conv_relu(cin, pool_proj, 1)
        )

    def forward(self, x):
        branches = (self.branch1, self.branch3, self.branch5, self.branch_pool)
        return torch.cat([b(x) for b in branches], dim=1)


# Table 1 rows: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
_INCEPTION_ROWS = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    """Inception v1 without auxiliary classifiers (inference graph)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()

        def lrn() -> nn.Module:
            return LRN(size=5, alpha=1e-4, beta=0.75)

        def pool() -> nn.Module:
            return nn.MaxPool2d(3, 2, ceil_mode=True)

        self.stem = nn.Sequential(
            _conv_relu(3, 64, 7, stride=2, padding=3),
            pool(),
            lrn(),
            _conv_relu(64, 64, 1),
            _conv_relu(64, 192, 3, padding=1),
            lrn(),
            pool(),
        )
        stages: list[nn.Module] = []
        channels = 192
        for name, row in _INCEPTION_ROWS.items():
            if name in ("4a", "5a"):
                stages.append(pool())
            stages.append(Inception(channels, *row))
            channels = row[0] + row[2] + row[4] + row[5]
        self.inception = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.4),
            nn.Linear(channels, num_classes),
        )

    def forward(self, x):
        return self.head(self.inception(self.stem(x)))


@register(
    "googlenet",
    description="GoogLeNet / Inception v1 (paper's Table 1, 5x5 branches, no aux heads)",
    input_shapes={"input": (1, 3, 224, 224)},
)
def googlenet() -> nn.Module:
    """GoogLeNet as in Table 1 of the paper (1.58 G MACs, 7.0 M parameters)."""
    return GoogLeNet()


class Fire(nn.Module):
    """SqueezeNet fire module: 1x1 squeeze, then 1x1 and 3x3 expands concatenated."""

    def __init__(self, cin: int, squeeze: int, expand1: int, expand3: int):
        super().__init__()
        self.squeeze = _conv_relu(cin, squeeze, 1)
        self.expand1 = _conv_relu(squeeze, expand1, 1)
        self.expand3 = _conv_relu(squeeze, expand3, 3, padding=1)

    def forward(self, x):
        x = self.squeeze(x)
        return torch.cat([self.expand1(x), self.expand3(x)], dim=1)


@register(
    "squeezenet1_1",
    description="SqueezeNet 1.1 (fire modules, 1.24 M parameters), 224x224",
    input_shapes={"input": (1, 3, 224, 224)},
)
def squeezenet1_1() -> nn.Module:
    """SqueezeNet 1.1: 3x3/2 stem with 64 filters, eight fire modules, conv classifier."""

    def pool() -> nn.Module:
        return nn.MaxPool2d(3, 2, ceil_mode=True)

    return nn.Sequential(
        _conv_relu(3, 64, 3, stride=2),
        pool(),
        Fire(64, 16, 64, 64),
        Fire(128, 16, 64, 64),
        pool(),
        Fire(128, 32, 128, 128),
        Fire(256, 32, 128, 128),
        pool(),
        Fire(256, 48, 192, 192),
        Fire(384, 48, 192, 192),
        Fire(384, 64, 256, 256),
        Fire(512, 64, 256, 256),
        nn.Dropout(0.5),
        _conv_relu(512, 1000, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
