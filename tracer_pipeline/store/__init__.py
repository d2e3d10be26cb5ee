from tracer_pipeline.store.embeddings import bytes_to_vector, vector_to_bytes
from tracer_pipeline.store.invocations import NewInvocation
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
from tracer_pipeline.store.store import TraceStore

__all__ = [
    "AttractorData", "ClusterRecord", "DiagramRecord", "GenerationRecord", "IntermediateRecord", "InvocationRecord",
    "NewInvocation", "Orphan", "PreferenceRecord", "RunRecord", "SteeringRoundRecord", "StoreComparison",
    "StoredEmbedding", "TraceStore",
    "bytes_to_vector", "vector_to_bytes",
]
