"""The heavy inference lane: the inference node, the gateway's batcher and forwarders.

``lane`` (sans-I/O: ``batcher`` cuts batches, ``pool`` chooses nodes and breaks
circuits) decides; ``lane_runner`` carries it out on the gateway's loop, to
native nodes or to OIP v2 servers (``oip_forwarder``). ``node`` is the
inference node process (``runtime``: ONNX Runtime / LiteRT models), served over
the native protocol and over OIP v2 (``oip_server``, bodies in ``oip``).
"""

from .batcher import Batch, Batcher, LaneRequest
from .errors import (
    ForwardError,
    InferenceError,
    ModelUnavailableError,
    NodeOverloadedError,
    TensorError,
)
from .lane import Answer, Forward, HeavyLane, LaneConfig
from .lane_runner import LaneRunner
from .node import InferenceNode, NodeConfig
from .runtime import ServedModel, load_model

__all__ = [
    "Answer",
    "Batch",
    "Batcher",
    "Forward",
    "ForwardError",
    "HeavyLane",
    "InferenceError",
    "InferenceNode",
    "LaneConfig",
    "LaneRequest",
    "LaneRunner",
    "ModelUnavailableError",
    "NodeConfig",
    "NodeOverloadedError",
    "ServedModel",
    "TensorError",
    "load_model",
]
