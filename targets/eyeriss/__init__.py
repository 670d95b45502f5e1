"""Eyeriss (Chen et al., ISSCC/JSSC 2016): the cost model, row-stationary mapper and payload."""

from hwcc.targets.eyeriss.target import Eyeriss

__all__ = ["Eyeriss"]
