"""Targets beyond the host: each module builds the generated C for its chips and runs it there."""
from .cortex_m import CORES

TARGETS = ("c", *CORES, "cuda")     # cuda: codegen/cuda.py
