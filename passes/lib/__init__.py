"""What the passes share: channel dependency groups, graph edits, weight views, k-means,
int8 and calibration, importance, factorisation and Winograd's matrices. Targets never
import it; the pass registry skips it."""
