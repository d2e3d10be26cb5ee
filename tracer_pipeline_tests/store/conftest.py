import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """A fresh, empty trace store's URL: a SQLite file, or a new database on a PostgreSQL server
    the tests started on loopback."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'trace.sqlite'}"
    server = request.getfixturevalue("postgres")
    return server.url(server.create_database("store"))
