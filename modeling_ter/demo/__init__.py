"""A Gradio demo for any TER checkpoint, and the folder of a Hugging Face Space that serves it (see `app.py`)."""

from .app import (
    DemoInputError,
    TradeoffCurve,
    TrustVerdict,
    build_demo,
    load_tradeoff_curve,
    trust_verdict,
    write_demo_space,
)

__all__ = [
    "DemoInputError",
    "TradeoffCurve",
    "TrustVerdict",
    "build_demo",
    "load_tradeoff_curve",
    "trust_verdict",
    "write_demo_space",
]
