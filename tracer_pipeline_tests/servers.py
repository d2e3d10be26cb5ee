"""Real PostgreSQL and Redis servers for tests: started on 127.0.0.1 with free ports, in a
throwaway folder, and stopped by PID. Each ``start_*`` returns the server or the reason none
could be started (so that a test can skip saying why)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

STARTUP_WAIT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin_dir() -> Path | None:
    """Where initdb and postgres are: the ``pgserver`` wheel's (a pip dependency of the ``dev``
    extra), then the PATH, then Debian's ``postgresql`` package."""
    candidates: list[Path] = []
    wheel = importlib.util.find_spec("pgserver")  # found, not imported: its import starts nothing but warns
    if wheel is not None and wheel.submodule_search_locations:
        candidates.append(Path(wheel.submodule_search_locations[0]) / "pginstall" / "bin")
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return next((d for d in candidates if (d / "initdb").exists() and (d / "postgres").exists()), None)


def _unprivileged_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: as root, run it as the first of these accounts."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgserver", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


def start_service(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """A service (the Dagster daemon, a worker) in its own process group, so that stopping it also
    stops what it started: the daemon's code server and run workers, a worker's pool process."""
    with open(log, "wb") as out:
        return subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_service(process: subprocess.Popen, sig: int) -> None:
    """Ask a service started by :func:`start_service` to shut down (``sig``), wait for it, then end
    whatever is left of its process group."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.kill(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class PostgresServer:
    folder: Path
    port: int
    process: subprocess.Popen

    def url(self, database: str = "postgres", driver: str = "psycopg") -> str:
        """SQLAlchemy URL of a database: ``psycopg`` (3) for the trace store, ``psycopg2`` for
        Dagster's storage (dagster-postgres needs it)."""
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "test") -> str:
        """A new, empty database; returns its name."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def stop(self) -> None:
        _stop(self.process, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres() -> PostgresServer | str:
    """A PostgreSQL server on a free loopback port, or why none could be started."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev]')"
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        return "no PostgreSQL binaries (pip install pgserver, or apt-get install postgresql)"
    user = _unprivileged_user()
    if os.geteuid() == 0 and user is None:
        return "running as root and no unprivileged account to run PostgreSQL as"
    folder = Path(tempfile.mkdtemp(prefix="tracer-pg-"))
    folder.chmod(0o755)  # the account PostgreSQL runs as must reach it
    data = folder / "data"
    data.mkdir()
    as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    if user:
        os.chown(folder, user.pw_uid, user.pw_gid)
        os.chown(data, user.pw_uid, user.pw_gid)
    init = subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                           "--encoding=UTF8", "--no-sync"], capture_output=True, text=True, **as_user)
    if init.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        return f"initdb failed: {init.stderr.strip()[-300:]}"
    port = free_port()
    log = open(folder / "postgres.log", "wb")  # noqa: SIM115 - the server's log, open while it runs
    process = subprocess.Popen(
        [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(folder),
         "-c", "fsync=off", "-c", "max_connections=200"],
        stdout=log, stderr=subprocess.STDOUT, **as_user)
    server = PostgresServer(folder, port, process)
    deadline = time.monotonic() + STARTUP_WAIT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            psycopg.connect(server.url().replace("postgresql+psycopg", "postgresql"), connect_timeout=2).close()
            return server
        except psycopg.OperationalError:
            time.sleep(0.2)
    reason = (folder / "postgres.log").read_text(errors="replace")[-300:]
    server.stop()
    return f"PostgreSQL did not start: {reason}"


@dataclass
class RedisServer:
    folder: Path
    port: int
    process: subprocess.Popen

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        _stop(self.process)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_redis() -> RedisServer | str:
    """A Redis server on a free loopback port, without persistence, or why none could be started."""
    try:
        import redis
    except ImportError:
        return "the redis client is not installed (pip install -e '.[cluster]')"
    binary = shutil.which("redis-server")
    if binary is None:
        return "redis-server is not installed (apt-get install redis-server)"
    folder = Path(tempfile.mkdtemp(prefix="tracer-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(folder, port, process)
    deadline = time.monotonic() + STARTUP_WAIT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            redis.Redis.from_url(server.url()).ping()
            return server
        except redis.ConnectionError:
            time.sleep(0.2)
    server.stop()
    return "redis-server did not start"
