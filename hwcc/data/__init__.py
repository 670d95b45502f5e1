"""Data: reading users' inputs and labels, and measuring accuracy in onnxruntime."""
