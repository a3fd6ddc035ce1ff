"""The stream: one micro-batch at a time, decoded, evaluated test-then-train, learned and
published (:class:`StreamProcessor`), with checkpoints of the whole state, replicas of one
model kept by a group of workers (:class:`Replica`), and the embedded simulation that drives
it from the in-process event log (``make demo``)."""

from recsys_stream.stream.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointStore,
    Quarantined,
    Restored,
    load_checkpoint,
    parse_checkpoint,
    restore_processor,
    save_checkpoint,
)
from recsys_stream.stream.processor import LEARNER, BatchResult, StreamProcessor, decode_records
from recsys_stream.stream.replica import ModelUpdate, Replica
from recsys_stream.stream.simulation import (
    SimulationConfig,
    build_report,
    fill_log,
    run_simulation,
)

__all__ = [
    "FORMAT_VERSION",
    "LEARNER",
    "BatchResult",
    "CheckpointError",
    "CheckpointStore",
    "ModelUpdate",
    "Quarantined",
    "Replica",
    "Restored",
    "SimulationConfig",
    "StreamProcessor",
    "build_report",
    "decode_records",
    "fill_log",
    "load_checkpoint",
    "parse_checkpoint",
    "restore_processor",
    "run_simulation",
    "save_checkpoint",
]
