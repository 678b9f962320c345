from eventlog.tables import SCHEMA, metadata
from servicekit.migrations import run_migrations_online

run_migrations_online(metadata, SCHEMA)
