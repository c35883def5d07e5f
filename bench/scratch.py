"""A scratch PostgreSQL schema for a bench script: made, used through a URL whose connections
live in it, dropped after. (Imported by the scripts of this folder, which Python puts first on
the path when one of them runs.)"""

from __future__ import annotations

import uuid


def postgres_schema(url: str, kept: str | None = None) -> tuple[str, str] | None:
    """A scratch schema (``kept``: that one, made if missing) and the URL that uses it; None
    when no server answers."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    schema = kept or f"bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
    except OperationalError:
        return None
    finally:
        engine.dispose()
    separator = "&" if "?" in url else "?"
    return schema, f"{url}{separator}options=-csearch_path%3D{schema}"


def drop_schema(url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()
