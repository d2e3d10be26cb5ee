from tracer_pipeline.store.store import (
    DiagramRecord,
    InvocationRecord,
    RunRecord,
    TraceStore,
    bytes_to_vector,
    vector_to_bytes,
)

__all__ = [
    "DiagramRecord", "InvocationRecord", "RunRecord", "TraceStore", "bytes_to_vector",
    "vector_to_bytes",
]
