from auth_service.models import SCHEMA, Base
from servicekit.migrations import run_migrations_online

run_migrations_online(Base.metadata, SCHEMA)
