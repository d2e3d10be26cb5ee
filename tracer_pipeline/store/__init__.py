from tracer_pipeline.store.records import (
    AttractorData,
    ClusterRecord,
    DiagramRecord,
    GenerationRecord,
    InvocationRecord,
    RunRecord,
    StoreComparison,
)
from tracer_pipeline.store.store import NewInvocation, TraceStore, bytes_to_vector, vector_to_bytes

__all__ = [
    "AttractorData", "ClusterRecord", "DiagramRecord", "GenerationRecord", "InvocationRecord", "NewInvocation",
    "RunRecord", "StoreComparison", "TraceStore",
    "bytes_to_vector", "vector_to_bytes",
]
