"""Graph -> Graph passes, one per file. Each returns a new Graph and leaves its input untouched."""
