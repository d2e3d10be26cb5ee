"""Self-consuming loops: a generator retrained, generation after generation, on its own samples.

The second kind of run (config key ``self_consuming``). Generation 0 is real data; generation
g ≥ 1 is sampled from the generator after it was (continually) trained on generation g−1. A small
classifier is trained on every generation, labels the next one, and is evaluated on every
generation's data (the cross-accuracy matrix); the classifier of generation 0, trained on real
data, labels every generation too, as a fixed judge of what the samples look like.

:mod:`.generators` holds the registry entries and real data (no torch at import),
:mod:`.training` the torch numerics, :mod:`.loop` one generation as a pure step from what is
stored. The engine that stores generations as invocations is
:mod:`tracer_pipeline.tracing.self_consuming`.
"""
