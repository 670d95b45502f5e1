"""Torch: the graph executor, its op library and fine-tuning; only these and the zoo use torch."""
