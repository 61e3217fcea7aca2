"""edgeswarm: a QUIC edge agent runtime with WebAssembly agents."""

__version__ = "0.1.0"

__all__ = ["__version__"]
