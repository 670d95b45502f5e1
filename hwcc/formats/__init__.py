"""Number and storage formats that passes and targets share: fixed point, Huffman code
lengths, and the relative-indexed sparse format of Deep Compression and EIE.

They live here, not in a target family, because passes account storage in them and passes
never import targets."""
