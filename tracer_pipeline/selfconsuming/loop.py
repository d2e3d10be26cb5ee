"""One generation of a self-consuming run, computed from the generations before it.

Generation 0 is the real data with its real labels. Generation g ≥ 1 is sampled from the
generator as it was left after training on generation g−1, and labelled by generation g−1's
classifier. Every generation then trains a fresh classifier on four fifths of its data (the
other fifth is its test split), is labelled by generation 0's classifier as well, completes its
row and column of the cross-accuracy matrix (accuracies on test splits), and finally continues
the generator's training on all its data, for the next generation to sample from.

Nothing is carried in memory from one generation to the next: the step reads the weights and
data that earlier generations stored, so a resumed run computes exactly what an uninterrupted one
would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from tracer_pipeline.selfconsuming.generators import SelfConsumingGenerator
from tracer_pipeline.store.records import GenerationRecord

TEST_SHARE = 0.2


def test_split(count: int, seed: int, generation: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices) of a generation's samples, drawn from its seed."""
    from tracer_pipeline.selfconsuming.training import derived_seed

    order = np.random.default_rng(derived_seed(seed, generation, "split")).permutation(count)
    cut = max(1, int(round(count * TEST_SHARE)))
    return order[cut:], order[:cut]


def next_generation(
    generator: SelfConsumingGenerator,
    params: Mapping[str, Any],
    run_id: str,
    seed: int,
    history: Sequence[GenerationRecord],
) -> tuple[GenerationRecord, Image.Image]:
    """Generation ``len(history)`` of the run and the grid picture of its samples."""
    import torch

    from tracer_pipeline.selfconsuming import training as t

    g = len(history)
    real = generator.real_data(params)
    shape = real.images.shape[1:]
    dimension, labels_count = int(np.prod(shape)), len(real.label_names)
    hidden = int(params["hidden_size"])

    def new_vae() -> t.VAE:
        return t.VAE(dimension, hidden, int(params["latent_size"]))

    def new_classifier() -> torch.nn.Module:
        return t.classifier(dimension, hidden, labels_count)

    if g == 0:
        vae = t.initialised(new_vae, t.derived_seed(seed, 0, "generator-init"))
        samples, labels = real.images, real.labels
    else:
        vae = t.load_state(new_vae(), history[-1].generator_state)
        count = int(params["samples_per_generation"])
        samples = t.sample_vae(vae, count, t.derived_seed(seed, g, "samples")).reshape(count, *shape)
        previous = t.load_state(new_classifier(), history[-1].classifier_state)
        labels = t.predict(previous, t.as_floats(samples))
    x, y = t.as_floats(samples), torch.from_numpy(labels)
    train, test = test_split(len(x), seed, g)
    model = t.initialised(new_classifier, t.derived_seed(seed, g, "classifier-init"))
    classifier_losses = t.train_classifier(model, x[train], y[train], int(params["classifier_epochs"]),
                                           t.derived_seed(seed, g, "classifier"))
    classifiers = [t.load_state(new_classifier(), h.classifier_state) for h in history] + [model]
    tests = [_test_part(h.samples, h.labels, seed, h.generation) for h in history]
    tests.append((x[test], labels[test]))

    def accuracy(trained: int, evaluated: int) -> float:
        inputs, expected = tests[evaluated]
        return float(np.mean(t.predict(classifiers[trained], inputs) == expected))

    pairs = [(g, j, accuracy(g, j)) for j in range(g + 1)] + [(i, g, accuracy(i, g)) for i in range(g)]
    counts = {
        "initial": tuple(int(c) for c in np.bincount(t.predict(classifiers[0], x), minlength=labels_count)),
        "current": tuple(int(c) for c in np.bincount(labels, minlength=labels_count)),
    }
    generator_losses = t.train_vae(vae, x, int(params["epochs"]), t.derived_seed(seed, g, "generator"))
    record = GenerationRecord(
        run_id=run_id, generation=g, invocation_id=None, samples=samples, labels=labels,
        label_names=real.label_names, generator_state=t.state_bytes(vae),
        classifier_state=t.state_bytes(model), generator_losses=tuple(generator_losses),
        classifier_losses=tuple(classifier_losses), label_counts=counts, cross_accuracy=tuple(pairs),
    )
    return record, generator.grid(samples)


def _test_part(samples: np.ndarray, labels: np.ndarray, seed: int, generation: int) -> tuple[Any, np.ndarray]:
    from tracer_pipeline.selfconsuming.training import as_floats

    _, test = test_split(len(samples), seed, generation)
    return as_floats(samples[test]), labels[test]
