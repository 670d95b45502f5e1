"""Classic networks for costing: LeNet-300-100, LeNet-5, AlexNet, VGG-16.

These are the networks of the Deep Compression / EIE / Eyeriss papers, defined layer for
layer as published so that per-layer costs can be compared with the papers' tables.
Weights are random (seeded); only shapes matter for costing.

MACs at batch 1 (conv: ``M*P*Q*C/groups*R*S``, linear: ``in*out``):

* LeNet-300-100: 0.266 M (all FC).
* LeNet-5 (Caffe): 2.29 M.
* AlexNet (Krizhevsky et al. 2012, two-GPU grouping, 227x227): 666 M in convolutions,
  724 M in total.
* VGG-16 (Simonyan & Zisserman 2015, configuration D, 224x224): 15.5 G.
"""

from __future__ import annotations

from torch import nn

from hwcc.models.layers import LRN
from hwcc.models.registry import register


@register(
    "lenet300",
    description="LeNet-300-100 MLP (784-300-100-10), MNIST-sized input",
    input_shapes={"input": (1, 784)},
)
def lenet300() -> nn.Module:
    """LeNet-300-100: three fully-connected layers with ReLU."""
    return nn.Sequential(
        nn.Linear(784, 300),
        nn.ReLU(),
        nn.Linear(300, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


@register(
    "lenet5",
    description="Caffe LeNet-5 (conv20-pool-conv50-pool-fc500-fc10) as in Deep Compression",
    input_shapes={"input": (1, 1, 28, 28)},
)
def lenet5() -> nn.Module:
    """Caffe's LeNet-5 variant: 20 and 50 5x5 filters, no padding, FC 500 and 10."""
    return nn.Sequential(
        nn.Conv2d(1, 20, 5),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(20, 50, 5),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(50 * 4 * 4, 500),
        nn.ReLU(),
        nn.Linear(500, 10),
    )


class AlexNet(nn.Module):
    """AlexNet exactly as in the 2012 paper (single-tower view of the two-GPU network).

    conv1 96@11x11/4 (no padding, 227 -> 55), LRN, max-pool 3/2; conv2 256@5x5 pad 2,
    groups 2, LRN, max-pool; conv3 384@3x3; conv4 384@3x3 groups 2; conv5 256@3x3 groups 2;
    max-pool; FC 4096, 4096, 1000 with dropout. LRN uses the paper's k=2, n=5,
    alpha=1e-4, beta=0.75.
    """

    def __init__(self, num_classes: int = 1000):
        super().__init__()

        def lrn() -> nn.Module:
            return LRN(size=5, alpha=1e-4, beta=0.75, k=2.0)

        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 11, stride=4),
            nn.ReLU(),
            lrn(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, padding=2, groups=2),
            nn.ReLU(),
            lrn(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 384, 3, padding=1, groups=2),
            nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1, groups=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@register(
    "alexnet",
    description="AlexNet, original 2012 paper (grouped conv2/4/5, LRN), 227x227",
    input_shapes={"input": (1, 3, 227, 227)},
)
def alexnet() -> nn.Module:
    """The original AlexNet (724 M MACs, 61 M parameters)."""
    return AlexNet()


# VGG configuration D: output channels of each 3x3 conv, "M" for a 2x2 max-pool.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
              512, 512, 512, "M", 512, 512, 512, "M")  # fmt: skip


@register(
    "vgg16",
    description="VGG-16 (configuration D), 224x224, 15.5 G MACs, ~550 MB exported",
    input_shapes={"input": (1, 3, 224, 224)},
)
def vgg16() -> nn.Module:
    """VGG-16: thirteen 3x3 convolutions and three FC layers (138 M parameters)."""
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG16_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
            channels = item
    return nn.Sequential(
        *layers,
        nn.Flatten(),
        nn.Linear(512 * 7 * 7, 4096),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(4096, 1000),
    )
