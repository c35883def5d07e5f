"""Engines and migrations: SQLite (the default, a file under subscribers/) or PostgreSQL.

SQLite runs in WAL mode (readers never wait for the writer) with foreign keys on, synchronous
NORMAL (durable at every checkpoint; safe against corruption) and a busy timeout, and write
transactions begin IMMEDIATE so a writer never fails halfway when another process wrote first.
Migrations are Alembic scripts inside this package, run programmatically: no alembic.ini.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from newsletter.errors import ConfigError, DatabaseError

MIGRATIONS = Path(__file__).with_name("migrations")
# Every SQLite connection's settings (cache_size in KiB when negative, checkpoints in pages).
SQLITE_PRAGMAS: dict[str, str | int] = {
    "journal_mode": "WAL", "foreign_keys": "ON", "synchronous": "NORMAL",
    "busy_timeout": 30_000, "cache_size": -32_000, "wal_autocheckpoint": 10_000,
    "journal_size_limit": 64 << 20}  # the log shrinks back after a large import
# Execution option that makes a SQLite transaction take the write lock up front.
WRITE = "newsletter_write"
UPGRADE_HINT = "run `newsletter db upgrade` (back the database up first)"


def make_engine(url: str) -> Engine:
    """An engine for a database URL; SQLite gets its pragmas and its folder created."""
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, **_engine_options(parsed.get_backend_name()))
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        raise ConfigError(f"database_url (NEWSLETTER_DATABASE_URL) {url!r}: {error}") from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _engine_options(backend: str) -> dict[str, Any]:
    if backend == "postgresql":
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    return {}


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for name, value in SQLITE_PRAGMAS.items():
            cursor.execute(f"PRAGMA {name} = {value}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(WRITE)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def safe_url(engine: Engine) -> str:
    """The URL with any password hidden, for messages."""
    return engine.url.render_as_string(hide_password=True)


# ---------------------------------------------------------------- migrations


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def revision_config(url: str) -> Config:
    """An Alembic config for development commands (``command.revision(..., autogenerate=True)``)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return config


def head_revision() -> str:
    """The newest migration this version of the code knows."""
    heads = ScriptDirectory(str(MIGRATIONS)).get_heads()
    if len(heads) != 1:  # a packaging bug: two migrations revise the same one
        raise DatabaseError(f"the migrations in {MIGRATIONS} have {len(heads)} heads "
                            f"({', '.join(sorted(heads))}): each must revise the previous one")
    return str(heads[0])


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at, or None for a database never migrated."""
    with _connect(engine) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Apply every pending migration; return the revision the database is now at."""
    _connect(engine).close()  # a clear error when the server is down
    command.upgrade(_alembic_config(engine), "head")
    return head_revision()


def prepare(engine: Engine) -> None:
    """Create the schema in an empty database; refuse one at another revision."""
    revision, head = current_revision(engine), head_revision()
    if revision == head:
        return
    if revision is None:
        with _connect(engine) as connection:
            tables = inspect(connection).get_table_names()
        if tables:
            raise DatabaseError(
                f"{safe_url(engine)} holds tables ({', '.join(sorted(tables)[:5])}) but no "
                "newsletter schema version: point NEWSLETTER_DATABASE_URL at an empty or a "
                "newsletter database")
        upgrade(engine)
        return
    if revision not in _known_revisions():
        raise DatabaseError(
            f"{safe_url(engine)} is at schema revision {revision}, which this version of "
            f"newsletter does not know (it knows up to {head}): upgrade newsletter itself")
    raise DatabaseError(
        f"{safe_url(engine)} is at schema revision {revision}, this version needs {head}: "
        f"{UPGRADE_HINT}")


def _known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}


def _connect(engine: Engine) -> Any:
    try:
        return engine.connect()
    except OperationalError as error:
        reason = str(error.orig or error).strip().splitlines()[0]
        raise DatabaseError(f"cannot open the database {safe_url(engine)}: {reason}") from None
