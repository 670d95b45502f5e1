"""What a compile leaves behind: the artifact folder, its HTML report and the charts."""
