"""Opening a store: what is a trace store, which version, read-only, and reads without the lock."""

import hashlib
import os
import shutil
import sqlite3
import subprocess
import threading

import pytest

from tracer_pipeline.config import parse_experiment
from tracer_pipeline.errors import StoreOpenError
from tracer_pipeline.store import TraceStore
from tracer_pipeline.store.schema import SCHEMA_VERSION

CONFIG = {"name": "open", "networks": [["DummyT2I", "DummyI2T"]], "seeds": [1], "prompts": ["a red balloon"],
          "embedding_models": ["DummyEmbed"], "max_length": 2}


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def other_application_db(path):
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        connection.execute("INSERT INTO customers VALUES (1, 'Ada')")
    return path


def test_a_new_store_records_its_kind_and_schema_version(tmp_path):
    TraceStore(f"sqlite:///{tmp_path / 't.sqlite'}").close()
    with sqlite3.connect(tmp_path / "t.sqlite") as connection:
        meta = dict(connection.execute("SELECT key, value FROM tracer_store_meta"))
    assert meta == {"kind": "tracer_pipeline trace store", "schema_version": str(SCHEMA_VERSION)}


@pytest.mark.parametrize("read_only", [True, False])
def test_a_database_of_another_application_is_refused_and_left_untouched(tmp_path, read_only):
    path = other_application_db(tmp_path / "shop.sqlite")
    before = digest(path)
    with pytest.raises(StoreOpenError, match=r"shop.sqlite is not a trace store: it holds other tables \(customers\)"):
        TraceStore(f"sqlite:///{path}", read_only=read_only)
    assert digest(path) == before
    with sqlite3.connect(path) as connection:
        assert [r[0] for r in connection.execute("SELECT name FROM sqlite_master")] == ["customers"]


def test_a_newer_schema_version_is_refused_untouched(tmp_path):
    path = tmp_path / "t.sqlite"
    TraceStore(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE tracer_store_meta SET value = '99' WHERE key = 'schema_version'")
    before = digest(path)
    with pytest.raises(StoreOpenError, match="schema version 99.*written by a newer tracer_pipeline"):
        TraceStore(f"sqlite:///{path}")
    assert digest(path) == before


def test_an_older_schema_and_garbage_are_refused_with_a_message(tmp_path):
    old = tmp_path / "old.sqlite"
    TraceStore(f"sqlite:///{old}").close()
    with sqlite3.connect(old) as connection:
        connection.execute("DROP TABLE tracer_store_meta")
        connection.execute("ALTER TABLE runs DROP COLUMN stop_reason")
    with pytest.raises(StoreOpenError, match="older or damaged trace-store schema.*runs lacks stop_reason"):
        TraceStore(f"sqlite:///{old}", read_only=True)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(StoreOpenError, match="cannot read .*garbage.sqlite as a trace store: file is not a database"):
        TraceStore(f"sqlite:///{garbage}", read_only=True)
    truncated = tmp_path / "truncated.sqlite"
    store = TraceStore(f"sqlite:///{tmp_path / 'full.sqlite'}")
    store.register_experiment(parse_experiment(CONFIG, "x"))
    store.close()
    truncated.write_bytes((tmp_path / "full.sqlite").read_bytes()[:3000])
    with pytest.raises(StoreOpenError, match="truncated.sqlite"):
        TraceStore(f"sqlite:///{truncated}", read_only=True).get_runs()


def test_a_missing_store_opened_read_only_names_where_it_looked_and_creates_nothing(tmp_path):
    with pytest.raises(StoreOpenError, match=f"no trace store at {tmp_path / 'nowhere' / 'tracer.sqlite'}"):
        TraceStore(f"sqlite:///{tmp_path / 'nowhere' / 'tracer.sqlite'}", read_only=True)
    assert not (tmp_path / "nowhere").exists()


def test_reads_do_not_wait_for_a_writer_holding_the_lock(tmp_path):
    path = tmp_path / "t.sqlite"
    store = TraceStore(f"sqlite:///{path}")
    store.register_experiment(parse_experiment(CONFIG, "x"))
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        answers = []
        reader = threading.Thread(target=lambda: answers.append(len(store.get_runs())), daemon=True)
        reader.start()
        reader.join(30)  # a locked read would wait out the 60 s busy timeout
        assert answers == [1]
        assert len(TraceStore(f"sqlite:///{path}", read_only=True).get_runs()) == 1
    finally:
        writer.execute("ROLLBACK")


def test_a_store_on_a_read_only_disk_can_be_read(tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    store = TraceStore(f"sqlite:///{folder / 't.sqlite'}")
    store.register_experiment(parse_experiment(CONFIG, "x"))
    store.close()
    if os.geteuid() == 0:  # root ignores permissions; the immutable attribute binds root too
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode:
            pytest.skip("running as root on a file system without chattr +i: cannot make a read-only folder")
        undo = ["chattr", "-i", str(folder)]
    else:
        folder.chmod(0o555)
        undo = ["chmod", "755", str(folder)]
    try:
        with pytest.raises(OSError):
            (folder / "probe").touch()
        assert [r.run_id for r in TraceStore(f"sqlite:///{folder / 't.sqlite'}", read_only=True).get_runs()]
    finally:
        subprocess.run(undo, check=True)
