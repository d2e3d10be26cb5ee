"""A subset of a trace store in a new database: one experiment, its runs and everything derived
from them, rows copied as they are (ids included, so lineage stays intact)."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Column, Table, func, select, text

from tracer_pipeline.errors import StoreOpenError
from tracer_pipeline.store.chunks import chunks
from tracer_pipeline.store.opening import describe
from tracer_pipeline.store.schema import Base, RunLeaseRow, StoreMetaRow
from tracer_pipeline.store.store import TraceStore

# Not copied: the store's own description (the new store writes its own), who is computing a run
# right now, and store-wide comparisons (recomputed from the copied diagrams on the next report).
NOT_COPIED = {StoreMetaRow.__tablename__, RunLeaseRow.__tablename__, "store_comparisons"}


def _selection(table: Table, experiment_id: int, name: str, run_ids: list[str],
               invocation_ids: list[int]) -> Iterator[object]:
    """The conditions choosing the experiment's rows of ``table`` (none: the table is not copied)."""
    columns = table.c
    if table.name == "experiments":
        yield columns.id == experiment_id
    elif "experiment_id" in columns:
        yield columns.experiment_id == experiment_id
    elif "run_id" in columns:
        yield from (columns.run_id.in_(chunk) for chunk in chunks(run_ids))
    elif "invocation_id" in columns:
        yield from (columns.invocation_id.in_(chunk) for chunk in chunks(invocation_ids))
    elif "experiment" in columns:
        yield columns.experiment == name


def copy_experiment(source: TraceStore, name: str, target_url: str) -> dict[str, int]:
    """Copy experiment ``name`` into the new trace store at ``target_url`` (it must hold no data
    yet); returns the rows copied per table. The runs keep only their link to this experiment."""
    experiment = source.require_experiment(name)
    run_ids = source.experiment_run_ids(name)
    target = TraceStore(target_url)
    try:
        with target.reading() as t:
            if t.scalar(select(func.count()).select_from(Base.metadata.tables["experiments"])):
                raise StoreOpenError(f"{describe(target_url)} already holds experiments; copy into a new "
                                     "database (a file or an empty database that does not exist yet)")
        copied: dict[str, int] = {}
        with source.reading() as s, target.session() as t:
            invocation_ids = list(s.scalars(select(Base.metadata.tables["invocations"].c.id).where(
                Base.metadata.tables["invocations"].c.run_id.in_(run_ids))))
            for table in Base.metadata.sorted_tables:
                if table.name in NOT_COPIED or table.name not in source._tables:  # absent from an older store
                    continue
                for condition in _selection(table, experiment.id, name, run_ids, invocation_ids):
                    query = select(table).where(condition).order_by(*table.primary_key.columns)  # inputs first
                    rows = [dict(r._mapping) for r in s.execute(query)]
                    if rows:
                        t.execute(table.insert(), rows)
                        copied[table.name] = copied.get(table.name, 0) + len(rows)
            if target.engine.dialect.name == "postgresql":
                _advance_sequences(t, [c for table in Base.metadata.sorted_tables for c in table.primary_key.columns])
    finally:
        target.close()
    return copied


def _advance_sequences(session, keys: list[Column]) -> None:
    """Rows were inserted with their ids: move PostgreSQL's id sequences past them."""
    for column in keys:
        if column.autoincrement is True or (column.autoincrement == "auto" and column.type.python_type is int):
            session.execute(text(
                f"SELECT setval(pg_get_serial_sequence('{column.table.name}', '{column.name}'), "
                f"COALESCE((SELECT MAX({column.name}) FROM {column.table.name}), 0) + 1, false)"))
