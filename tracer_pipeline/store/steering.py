"""The steering kind's part of the store API: rounds and their preferences.
:class:`SteeringTables` is mixed into :class:`~tracer_pipeline.store.TraceStore`, so there is
still one store API; it only needs the store's ``session()`` and ``reading()``.

A round is written after its invocation, in one transaction of its own; the engine treats an
invocation without its round (a crash between the two) as not computed.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sqlalchemy import select

from tracer_pipeline.store.records import PreferenceRecord, SteeringRoundRecord
from tracer_pipeline.store.schema import PreferenceRow, SteeringRoundRow
from tracer_pipeline.store.tables import StoreTables


def _bytes(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype="<f4").tobytes()


def _array(data: bytes, shape: list[int]) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(shape)


class SteeringTables(StoreTables):
    _tables: set[str]

    def add_round(self, record: SteeringRoundRecord) -> None:
        """Store a round (its invocation must be stored: ``record.invocation_id``) with its
        preferences, in one transaction."""
        with self.session() as s:
            row = SteeringRoundRow(
                run_id=record.run_id, round=record.round, invocation_id=record.invocation_id,
                action_shape=list(record.destination.shape), destination=_bytes(record.destination),
                reward_state=record.reward_state, reward_losses=list(record.reward_losses),
                reward_loss=record.reward_losses[-1], heldout_accuracy=record.heldout_accuracy,
                destination_reward=record.destination_reward, target_similarity=record.target_similarity,
            )
            s.add(row)
            s.flush()
            s.add_all(PreferenceRow(
                run_id=record.run_id, round_id=row.id, round=record.round, pair=p.pair,
                first_action=_bytes(p.first_action), second_action=_bytes(p.second_action),
                first_reward=p.first_reward, second_reward=p.second_reward, first_similarity=p.first_similarity,
                second_similarity=p.second_similarity, choice=p.choice) for p in record.preferences)

    def steering_rounds(self, run_id: str) -> list[SteeringRoundRecord]:
        """A steering run's stored rounds with their preferences, in order (none in a store of an
        older schema opened read-only)."""
        if SteeringRoundRow.__tablename__ not in self._tables:
            return []
        with self.reading() as s:
            rows = list(s.scalars(select(SteeringRoundRow).where(SteeringRoundRow.run_id == run_id)
                                  .order_by(SteeringRoundRow.round)))
            shapes = {r.id: r.action_shape for r in rows}
            preferences: dict[int, list[PreferenceRecord]] = {}
            for p in s.scalars(select(PreferenceRow).where(PreferenceRow.run_id == run_id)
                               .order_by(PreferenceRow.round, PreferenceRow.pair)):
                shape = shapes[p.round_id]
                preferences.setdefault(p.round_id, []).append(PreferenceRecord(
                    pair=p.pair, first_action=_array(p.first_action, shape),
                    second_action=_array(p.second_action, shape), first_reward=p.first_reward,
                    second_reward=p.second_reward, first_similarity=p.first_similarity,
                    second_similarity=p.second_similarity, choice=p.choice))
            return [SteeringRoundRecord(
                run_id=r.run_id, round=r.round, invocation_id=r.invocation_id,
                destination=_array(r.destination, r.action_shape), reward_state=r.reward_state,
                reward_losses=tuple(r.reward_losses), heldout_accuracy=r.heldout_accuracy,
                destination_reward=r.destination_reward, target_similarity=r.target_similarity,
                preferences=tuple(preferences.get(r.id, ())),
            ) for r in rows]

    def preferences(self, run_ids: Iterable[str]) -> list[dict]:
        """Rows (run_id, round, pair, first_reward, second_reward, first_similarity,
        second_similarity, choice), sorted by run, round and pair."""
        if PreferenceRow.__tablename__ not in self._tables:
            return []
        with self.reading() as s:
            return [dict(run_id=p.run_id, round=p.round, pair=p.pair, first_reward=p.first_reward,
                         second_reward=p.second_reward, first_similarity=p.first_similarity,
                         second_similarity=p.second_similarity, choice=p.choice)
                    for p in s.scalars(select(PreferenceRow).where(PreferenceRow.run_id.in_(list(run_ids)))
                                       .order_by(PreferenceRow.run_id, PreferenceRow.round, PreferenceRow.pair))]

    def steering_figures(self, run_ids: Iterable[str]) -> list[dict]:
        """Rows (run_id, round, reward_loss, heldout_accuracy, destination_reward,
        target_similarity), sorted by run and round."""
        if SteeringRoundRow.__tablename__ not in self._tables:
            return []
        with self.reading() as s:
            return [dict(run_id=r.run_id, round=r.round, reward_loss=r.reward_loss,
                         heldout_accuracy=r.heldout_accuracy, destination_reward=r.destination_reward,
                         target_similarity=r.target_similarity)
                    for r in s.scalars(select(SteeringRoundRow).where(SteeringRoundRow.run_id.in_(list(run_ids)))
                                       .order_by(SteeringRoundRow.run_id, SteeringRoundRow.round))]
