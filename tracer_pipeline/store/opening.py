"""Opening a trace store: the engine, and the check that the database is a trace store this
version can use, before anything is read or written.

A database is accepted when it is empty (a new store: created only when opened for writing),
or when it carries this store's kind and :data:`SCHEMA_VERSION` in ``tracer_store_meta``, or
when it holds the trace tables with every column this version needs but no version yet (a store
written before versions were recorded: stamped when opened for writing), or when its version is
one of :data:`ADDITIVE_UPGRADES`: versions that later ones only added tables to, so it is
brought up to date when opened for writing (the tables are created, the version stamped) and
read as it is when opened read-only (the tables it lacks read as empty). Anything else (another
application's database, a newer or older schema, a file that is not a database) is refused with
a :class:`StoreOpenError` naming the database, and left exactly as it was.

Opened read-only, a SQLite store is opened with ``mode=ro`` (no file is created, no write lock is
taken), and where even that cannot work because its folder is read-only (SQLite's WAL needs a
shared-memory file beside the database) with ``immutable=1``.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, func, inspect, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from tracer_pipeline.errors import StoreOpenError
from tracer_pipeline.store.schema import SCHEMA_VERSION, Base, StoreMetaRow

SQLITE_BUSY_TIMEOUT_MS = 60_000
# Older schema versions from which every change up to SCHEMA_VERSION only added tables.
ADDITIVE_UPGRADES = frozenset({"1"})
STORE_KIND = "tracer_pipeline trace store"
# The tables that make a database a trace store, whatever else a later version adds.
CORE_TABLES = ("experiments", "experiment_runs", "runs", "invocations", "embeddings", "persistence_diagrams")
READ_OPTION = "tracer_read_only"  # execution option of transactions that only read


def describe(url: str) -> str:
    """The database for people: a SQLite file's path, else the URL without its password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    return parsed.render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database or an in-memory one)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def create_store_engine(url: str, read_only: bool) -> Engine:
    """An engine for the store at ``url``. Writers on SQLite take the write lock when their
    transaction begins (``BEGIN IMMEDIATE``), so concurrent writer processes queue instead of
    failing halfway; transactions with the :data:`READ_OPTION` execution option begin deferred
    and take no lock."""
    try:
        parsed = make_url(url)
    except SQLAlchemyError as exc:
        raise StoreOpenError(f"{url!r} is not a database URL ({exc}); give e.g. "
                             "sqlite:///path/to/tracer.sqlite or postgresql://host/db") from None
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    path = sqlite_path(url)
    if path is not None and read_only:
        if not path.is_file():
            raise StoreOpenError(
                f"no trace store at {path}: the file does not exist (working directory {Path.cwd()}). "
                "Point --data-dir or --db-url at an existing store, or create one with "
                "`trajectory-tracer run-experiment CONFIG`.")
        engine = create_engine("sqlite://", creator=lambda: _connect_read_only(path))
    else:
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreOpenError(f"cannot create the trace store's folder {path.parent}: "
                                     f"{exc.strerror or exc}; check --data-dir / --db-url") from None
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        cursor = dbapi_connection.cursor()
        if not read_only:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        reading = read_only or connection.get_execution_options().get(READ_OPTION, False)
        connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")

    return engine


SCHEMA_LOCK = "schema"


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's ``pg_advisory_xact_lock``, from a lock's name."""
    return int.from_bytes(hashlib.sha256(f"tracer_pipeline:{name}".encode()).digest()[:8], "big", signed=True)


def open_store_engine(url: str, read_only: bool) -> tuple[Engine, set[str]]:
    """The engine of a checked store, and its tables. An existing SQLite file is first checked
    through a read-only connection, because a writer's first connection already changes the
    file (it switches it to WAL mode)."""
    path = sqlite_path(url)
    if not read_only and path is not None and path.is_file() and path.stat().st_size > 0:
        probe = create_store_engine(url, read_only=True)
        try:
            # A file without tables yet is a store another writer is creating at this moment.
            check_schema(probe, url, create=False, allow_empty=True)
        finally:
            probe.dispose()
    engine = create_store_engine(url, read_only)
    try:
        return engine, check_schema(engine, url, create=not read_only)
    except Exception:
        engine.dispose()
        raise


def _connect_read_only(path: Path) -> sqlite3.Connection:
    uri = f"file:{quote(str(path.resolve()))}"
    timeout = SQLITE_BUSY_TIMEOUT_MS / 1000
    try:
        connection = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout, check_same_thread=False)
        connection.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        return connection
    except sqlite3.OperationalError:
        # A WAL database in a read-only folder: SQLite cannot create its shared-memory file.
        # Nobody can be writing it there, so it can be read as an immutable file.
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=timeout,
                               check_same_thread=False)


def check_schema(engine: Engine, url: str, create: bool, allow_empty: bool = False) -> set[str]:
    """Refuse a database this version cannot use (see the module's docstring); when ``create``,
    make a new or unversioned store current. Returns the tables present afterwards."""
    where = describe(url)
    try:
        inspector = inspect(engine)
        tables = set(inspector.get_table_names())
        columns = {t: {c["name"] for c in inspector.get_columns(t)} for t in tables & set(Base.metadata.tables)}
        meta: dict[str, str] = {}
        if StoreMetaRow.__tablename__ in tables:
            with engine.connect() as connection:
                meta = dict(connection.execute(select(StoreMetaRow.key, StoreMetaRow.value)).all())
    except DBAPIError as exc:
        reason = str(exc.orig).strip() if exc.orig is not None else str(exc)
        raise StoreOpenError(f"cannot read {where} as a trace store: {reason} (not a database, damaged, "
                             "or unreachable); nothing was changed") from None
    if tables:
        _check_kind(where, tables, meta)
        _check_columns(where, columns)
    elif not create and not allow_empty:
        raise StoreOpenError(f"{where} is an empty database, not a trace store; point --data-dir or "
                             "--db-url at a store, or create one with `trajectory-tracer run-experiment CONFIG`")
    if not create:
        return tables
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                # Several processes may open a fresh store at once, and create_all checks, then
                # creates: under the lock a second process sees the first's tables.
                connection.execute(select(func.pg_advisory_xact_lock(advisory_key(SCHEMA_LOCK))))
            Base.metadata.create_all(connection)
            if not connection.execute(select(StoreMetaRow.key)).first():
                connection.execute(StoreMetaRow.__table__.insert(), [
                    {"key": "kind", "value": STORE_KIND}, {"key": "schema_version", "value": str(SCHEMA_VERSION)}])
            elif meta.get("schema_version") in ADDITIVE_UPGRADES:
                connection.execute(update(StoreMetaRow).where(StoreMetaRow.key == "schema_version")
                                   .values(value=str(SCHEMA_VERSION)))
    except DBAPIError as exc:
        raise StoreOpenError(f"cannot write to the trace store {where}: {exc.orig}") from None
    return set(Base.metadata.tables) | tables


def _check_kind(where: str, tables: set[str], meta: dict[str, str]) -> None:
    if not meta:
        missing = [t for t in CORE_TABLES if t not in tables]
        if missing:
            shown = ", ".join(sorted(tables)[:8]) + (" …" if len(tables) > 8 else "")
            raise StoreOpenError(
                f"{where} is not a trace store: it holds other tables ({shown}) and lacks "
                f"{', '.join(missing)}; it was left untouched. Point --data-dir or --db-url at a "
                "trace store, or at a new file to create one.")
        return
    if meta.get("kind") != STORE_KIND:
        raise StoreOpenError(f"{where} is not a trace store (its tracer_store_meta names "
                             f"{meta.get('kind')!r}); it was left untouched")
    version = meta.get("schema_version", "")
    if version != str(SCHEMA_VERSION) and version not in ADDITIVE_UPGRADES:
        newer = version.isdigit() and int(version) > SCHEMA_VERSION
        hint = ("it was written by a newer tracer_pipeline: upgrade this one" if newer else
                "copy what you need with the tracer_pipeline version that wrote it")
        raise StoreOpenError(f"{where} is a trace store of schema version {version or '?'}, and this "
                             f"version reads version {SCHEMA_VERSION} only; {hint}. It was left untouched.")


def _check_columns(where: str, columns: dict[str, set[str]]) -> None:
    lacking = [f"{table} lacks {', '.join(sorted(set(Base.metadata.tables[table].columns.keys()) - have))}"
               for table, have in sorted(columns.items())
               if set(Base.metadata.tables[table].columns.keys()) - have]
    if lacking:
        raise StoreOpenError(f"{where} has an older or damaged trace-store schema ({'; '.join(lacking)}); "
                             f"this version needs schema version {SCHEMA_VERSION}. It was left untouched.")
