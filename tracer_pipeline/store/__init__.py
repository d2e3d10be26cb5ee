from tracer_pipeline.store.records import (
    AttractorData,
    ClusterRecord,
    DiagramRecord,
    GenerationRecord,
    IntermediateRecord,
    InvocationRecord,
    Orphan,
    PreferenceRecord,
    RunRecord,
    SteeringRoundRecord,
    StoreComparison,
    StoredEmbedding,
)
from tracer_pipeline.store.store import NewInvocation, TraceStore, bytes_to_vector, vector_to_bytes

__all__ = [
    "AttractorData", "ClusterRecord", "DiagramRecord", "GenerationRecord", "IntermediateRecord", "InvocationRecord",
    "NewInvocation", "Orphan", "PreferenceRecord", "RunRecord", "SteeringRoundRecord", "StoreComparison",
    "StoredEmbedding", "TraceStore",
    "bytes_to_vector", "vector_to_bytes",
]
