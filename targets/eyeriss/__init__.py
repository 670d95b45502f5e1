"""Eyeriss (Chen et al., ISSCC/JSSC 2016): the cost model, the row-stationary mapper and the payload."""

from hwcc.targets.eyeriss.target import Eyeriss

__all__ = ["Eyeriss"]
