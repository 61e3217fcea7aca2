"""Where an edge's observations come from and its actions go: sources and sinks.

:mod:`.base` defines the interface (:class:`ObservationSource`,
:class:`ActionSink`, :class:`AgentIO`); :mod:`.registry` opens one from an
``--io`` address: the flocking simulator (:mod:`.simulator`), an MQTT broker
(:mod:`.mqtt`), a recording (:mod:`.replay`) or a plug-in of the entry-point
group ``edgeswarm.io``. docs/io.md is the user's guide.
"""

from .base import ActionSink, AgentIO, IoContext, IoError, ObservationSource
from .metrics import IoMetrics
from .registry import ENTRY_POINT_GROUP, available_kinds, open_io

__all__ = [
    "ENTRY_POINT_GROUP",
    "ActionSink",
    "AgentIO",
    "IoContext",
    "IoError",
    "IoMetrics",
    "ObservationSource",
    "available_kinds",
    "open_io",
]
