"""Steering runs: searching a generator's noise space for the image a user wants, with pairwise
preferences as the only signal (preference-based image generation).

The third kind of run (config key ``steering``). Each round samples actions (noise vectors),
keeps those the reward model scores highest, pairs them, asks a preference source which of each
pair is better (or both good, or both bad), adds the answers to the run's memory, trains the
reward model on the memory with the Bradley–Terry cross-entropy, and moves the destination action
by gradient ascent on the reward. The destination's image is the round's invocation, so a run's
rounds form a trajectory like any other.

:mod:`.options` holds a run's options (no torch), :mod:`.generators` the noise-to-image
generators, :mod:`.feedback` the preference sources, :mod:`.reward` the torch numerics and
:mod:`.loop` one round as a pure step from what is stored. The engine that stores rounds as
invocations is :mod:`tracer_pipeline.tracing.steering`.
"""
