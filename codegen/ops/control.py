"""If, Scan and Loop: the frontend (codegen/control_flow.py) inlines them into plain nodes when their
structure is known at compile time, and refuses the others with the reason; none reaches lowering.
Registered so that their conformance cases run."""
from __future__ import annotations

from . import Unsupported, op


@op("If", "Scan", "Loop")
def control_flow(outs, *inputs, **attrs):
    raise Unsupported("control flow is inlined by the frontend, which could not inline this node")
