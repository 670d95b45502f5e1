"""Torch: the graph executor, its op library and the fine-tunes (the only torch user besides the zoo)."""
