"""The self-consuming kind's part of the store API: generations, cross-accuracy and label
frequencies. :class:`GenerationTables` is mixed into :class:`~tracer_pipeline.store.TraceStore`,
so there is still one store API; it only needs the store's ``session()``.

A generation is written after its invocation, in one transaction of its own; the engine treats
an invocation without its generation (a crash between the two) as not computed.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sqlalchemy import Select, select

from tracer_pipeline.store.records import GenerationRecord
from tracer_pipeline.store.schema import CrossAccuracyRow, GenerationRow, LabelFrequencyRow
from tracer_pipeline.store.tables import StoreTables


class GenerationTables(StoreTables):
    def add_generation(self, record: GenerationRecord) -> None:
        """Store a generation (its invocation must be stored: ``record.invocation_id``) with its
        cross-accuracy pairs and label counts, in one transaction."""
        with self.session() as s:
            row = GenerationRow(
                run_id=record.run_id, generation=record.generation, invocation_id=record.invocation_id,
                sample_shape=list(record.samples.shape), samples=np.ascontiguousarray(record.samples).tobytes(),
                labels=record.labels.astype("<i8").tobytes(), label_names=list(record.label_names),
                generator_state=record.generator_state, classifier_state=record.classifier_state,
                generator_losses=list(record.generator_losses), classifier_losses=list(record.classifier_losses),
            )
            s.add(row)
            s.flush()
            s.add_all(CrossAccuracyRow(run_id=record.run_id, generation_id=row.id, trained_generation=i,
                                       evaluated_generation=j, accuracy=a) for i, j, a in record.cross_accuracy)
            s.add_all(LabelFrequencyRow(run_id=record.run_id, generation_id=row.id, generation=record.generation,
                                        classifier=classifier, label=record.label_names[k], count=count)
                      for classifier, counts in sorted(record.label_counts.items())
                      for k, count in enumerate(counts))

    def generations(self, run_id: str) -> list[GenerationRecord]:
        """A self-consuming run's stored generations, in order."""
        with self.reading() as s:
            rows = list(s.scalars(select(GenerationRow).where(GenerationRow.run_id == run_id)
                                  .order_by(GenerationRow.generation)))
            pairs: dict[int, list[tuple[int, int, float]]] = {}
            for r in s.scalars(select(CrossAccuracyRow).where(CrossAccuracyRow.run_id == run_id)
                               .order_by(CrossAccuracyRow.id)):
                pairs.setdefault(r.generation_id, []).append((r.trained_generation, r.evaluated_generation, r.accuracy))
            counts: dict[int, dict[str, list[int]]] = {}
            for r in s.scalars(select(LabelFrequencyRow).where(LabelFrequencyRow.run_id == run_id)
                               .order_by(LabelFrequencyRow.id)):
                counts.setdefault(r.generation_id, {}).setdefault(r.classifier, []).append(r.count)
            return [GenerationRecord(
                run_id=r.run_id, generation=r.generation, invocation_id=r.invocation_id,
                samples=np.frombuffer(r.samples, dtype=np.uint8).reshape(r.sample_shape),
                labels=np.frombuffer(r.labels, dtype="<i8").astype(np.int64), label_names=tuple(r.label_names),
                generator_state=r.generator_state, classifier_state=r.classifier_state,
                generator_losses=tuple(r.generator_losses), classifier_losses=tuple(r.classifier_losses),
                label_counts={k: tuple(v) for k, v in counts.get(r.id, {}).items()},
                cross_accuracy=tuple(pairs.get(r.id, ())),
            ) for r in rows]

    def cross_accuracy(self, run_ids: Iterable[str]) -> list[dict]:
        """Rows (run_id, trained_generation, evaluated_generation, accuracy), sorted."""
        with self.reading() as s:
            return [dict(run_id=r.run_id, trained_generation=r.trained_generation,
                         evaluated_generation=r.evaluated_generation, accuracy=r.accuracy)
                    for r in s.scalars(_sorted(select(CrossAccuracyRow), CrossAccuracyRow, run_ids,
                                               CrossAccuracyRow.trained_generation,
                                               CrossAccuracyRow.evaluated_generation))]

    def label_frequencies(self, run_ids: Iterable[str]) -> list[dict]:
        """Rows (run_id, generation, classifier, label, count), in label order per generation."""
        with self.reading() as s:
            return [dict(run_id=r.run_id, generation=r.generation, classifier=r.classifier, label=r.label,
                         count=r.count)
                    for r in s.scalars(_sorted(select(LabelFrequencyRow), LabelFrequencyRow, run_ids,
                                               LabelFrequencyRow.generation, LabelFrequencyRow.classifier,
                                               LabelFrequencyRow.id))]


def _sorted(query: Select, table: type, run_ids: Iterable[str], *order) -> Select:
    return query.where(table.run_id.in_(list(run_ids))).order_by(table.run_id, *order)
