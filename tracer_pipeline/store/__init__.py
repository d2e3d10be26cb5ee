from tracer_pipeline.store.records import (
    AttractorData,
    ClusterRecord,
    DiagramRecord,
    GenerationRecord,
    IntermediateRecord,
    InvocationRecord,
    Orphan,
    RunRecord,
    StoreComparison,
    StoredEmbedding,
)
from tracer_pipeline.store.store import NewInvocation, TraceStore, bytes_to_vector, vector_to_bytes

__all__ = [
    "AttractorData", "ClusterRecord", "DiagramRecord", "GenerationRecord", "IntermediateRecord", "InvocationRecord",
    "NewInvocation", "Orphan", "RunRecord", "StoreComparison", "StoredEmbedding", "TraceStore",
    "bytes_to_vector", "vector_to_bytes",
]
