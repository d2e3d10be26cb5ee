from tracer_pipeline.store.records import (
    AttractorData,
    DiagramRecord,
    GenerationRecord,
    InvocationRecord,
    RunRecord,
    StoreComparison,
)
from tracer_pipeline.store.store import TraceStore, bytes_to_vector, vector_to_bytes

__all__ = [
    "AttractorData", "DiagramRecord", "GenerationRecord", "InvocationRecord", "RunRecord", "StoreComparison",
    "TraceStore",
    "bytes_to_vector", "vector_to_bytes",
]
