"""`python -m servicekit.migrate MIGRATIONS_DIR...`: create the database if it is missing, then
bring each service's schema to its newest revision. The URL comes from DATABASE_URL (or a file
named by DATABASE_URL_FILE)."""

import asyncio
import sys
from pathlib import Path

from servicekit.db import ensure_database
from servicekit.migrations import upgrade
from servicekit.settings import ServiceSettings


async def main(migration_dirs: list[Path], database_url: str) -> None:
    if await ensure_database(database_url):
        print(f"created database {database_url.rsplit('/', 1)[-1]}", file=sys.stderr)
    for directory in migration_dirs:
        await asyncio.to_thread(upgrade, directory, database_url)
        print(f"migrated {directory}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m servicekit.migrate MIGRATIONS_DIR...")
    # DATABASE_URL or DATABASE_URL_FILE, as the services read it.
    asyncio.run(main([Path(arg) for arg in sys.argv[1:]], ServiceSettings().database_url))
