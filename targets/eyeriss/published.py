"""Eyeriss' published AlexNet figures, shared by the tests and the bench.

Chen et al., "Eyeriss: An Energy-Efficient Reconfigurable Accelerator for Deep
Convolutional Neural Networks", JSSC 2017: Table III (the layer shapes of the 2-group
AlexNet and the row-stationary mapping used for each) and Table V (batch 4 at 200 MHz:
active PEs, latency, DRAM traffic, power, zeros in the input maps). Yang, Chen and Sze,
CVPR 2017, Fig. 1: GoogLeNet's energy split on Eyeriss.
"""

from __future__ import annotations

__all__ = [
    "ALEXNET",
    "BATCH",
    "ACTIVE_PES",
    "PROCESSING_MS",
    "TOTAL_MS",
    "DRAM_MB",
    "POWER_MW",
    "ZEROS_IN_IFMAPS",
    "OFMAP_DENSITY",
    "GOOGLENET_SPLIT",
]

# Table III: name -> ((C, H, M, R, stride, pad, groups),
#                      mapping (m, n, e, p, q, r, t) for one group).
ALEXNET = {
    "CONV1": ((3, 227, 96, 11, 4, 0, 1), (96, 1, 7, 16, 1, 1, 2)),
    "CONV2": ((96, 27, 256, 5, 1, 2, 2), (64, 1, 27, 16, 2, 1, 1)),
    "CONV3": ((256, 13, 384, 3, 1, 1, 1), (64, 4, 13, 16, 4, 1, 4)),
    "CONV4": ((384, 13, 384, 3, 1, 1, 2), (64, 4, 13, 16, 3, 2, 2)),
    "CONV5": ((384, 13, 256, 3, 1, 1, 2), (64, 4, 13, 16, 3, 2, 2)),
}
BATCH = 4  # Table V conditions
ACTIVE_PES = {"CONV1": 154, "CONV2": 135, "CONV3": 156, "CONV4": 156, "CONV5": 156}
PROCESSING_MS = {"CONV1": 16.5, "CONV2": 39.2, "CONV3": 21.8, "CONV4": 16.0, "CONV5": 10.0}
TOTAL_MS = {"CONV1": 20.9, "CONV2": 41.9, "CONV3": 23.6, "CONV4": 18.4, "CONV5": 10.5}
DRAM_MB = {"CONV1": 5.0, "CONV2": 4.0, "CONV3": 3.0, "CONV4": 2.1, "CONV5": 1.3}  # MB = 1e6 B
POWER_MW = {"CONV1": 332, "CONV2": 288, "CONV3": 266, "CONV4": 235, "CONV5": 236}
ZEROS_IN_IFMAPS = {"CONV1": 0.0001, "CONV2": 0.387, "CONV3": 0.725, "CONV4": 0.793, "CONV5": 0.776}

# Density of the tensor each layer writes (an assumption, not a published figure): the next
# layer's published ifmap density, because LRN keeps zeros and the max-pooling between can
# only raise the density (so for CONV1 and CONV2 it bounds the written density from above);
# CONV3 -> CONV4 -> CONV5 have nothing in between (exact). CONV5's output density is not
# published: its own ifmap's.
_NEXT = {"CONV1": "CONV2", "CONV2": "CONV3", "CONV3": "CONV4", "CONV4": "CONV5", "CONV5": "CONV5"}
OFMAP_DENSITY = {name: 1 - ZEROS_IN_IFMAPS[after] for name, after in _NEXT.items()}

# CVPR 2017 Fig. 1: GoogLeNet v1 energy on Eyeriss, by data type.
GOOGLENET_SPLIT = {"psums_j": 0.43, "ifmaps_j": 0.25, "weights_j": 0.22, "mac_j": 0.10}
