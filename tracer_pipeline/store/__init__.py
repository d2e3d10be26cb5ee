from tracer_pipeline.store.records import (
    AttractorData,
    DiagramRecord,
    InvocationRecord,
    Orphan,
    RunRecord,
    StoreComparison,
    StoredEmbedding,
)
from tracer_pipeline.store.store import TraceStore, bytes_to_vector, vector_to_bytes

__all__ = [
    "AttractorData", "DiagramRecord", "InvocationRecord", "Orphan", "RunRecord", "StoreComparison",
    "StoredEmbedding", "TraceStore",
    "bytes_to_vector", "vector_to_bytes",
]
