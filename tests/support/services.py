"""Where the test suite finds PostgreSQL and Redis (the same variables the settings read)."""

import os
from urllib.parse import urlparse, urlunparse

DATABASE_URL = os.environ.get("BMS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bms")
REDIS_URL = os.environ.get("BMS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def database_url(name: str) -> str:
    """The test server's URL with another database name."""
    return urlunparse(urlparse(DATABASE_URL)._replace(path=f"/{name}"))


def admin_conninfo() -> str:
    """A connection string to the server's ``postgres`` database, for CREATE/DROP DATABASE."""
    return database_url("postgres")


def database_port() -> int:
    """The test PostgreSQL's port (the upstream of a proxy that stands for a database outage)."""
    return urlparse(DATABASE_URL).port or 5432


def proxied_database_url(name: str, proxy_port: int) -> str:
    """The URL of database ``name`` reached through a proxy on ``127.0.0.1:proxy_port`` instead of directly."""
    userinfo = urlparse(DATABASE_URL).netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{proxy_port}" if userinfo else f"127.0.0.1:{proxy_port}"
    return urlunparse(urlparse(database_url(name))._replace(netloc=netloc))
