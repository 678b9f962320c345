"""`python -m auth_service.admin create-admin EMAIL`: make the first admin (or any later one).

An existing account is promoted (and reactivated); otherwise an account is created, verified,
with the password from `ADMIN_PASSWORD` or, when that is unset, asked for on the terminal.
No admin exists by default. The database is the one in DATABASE_URL.
"""

import argparse
import asyncio
import getpass
import os
import sys
import uuid

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select

from auth_service.config import Settings
from auth_service.models import User
from auth_service.passwords import PasswordHasher
from auth_service.schemas import Email, Password
from servicekit.db import Database


def read_password() -> str:
    from_env = os.environ.get("ADMIN_PASSWORD")
    if from_env is not None:
        return from_env
    password = getpass.getpass("Password for the new admin: ")
    if getpass.getpass("Again: ") != password:
        sys.exit("the passwords differ")
    return password


async def create_admin(settings: Settings, email: str) -> str:
    """Promote or create the account for `email`; a line saying which."""
    database = Database(settings)
    try:
        async with database.sessionmaker.begin() as session:
            user = await session.scalar(
                select(User).where(func.lower(User.email) == func.lower(email)).with_for_update()
            )
            if user is not None:
                user.is_admin, user.is_active = True, True
                return f"{user.email} is now an admin"
            password = TypeAdapter(Password).validate_python(read_password())
            hashed = await PasswordHasher(settings, concurrency=1).hash(password)
            session.add(
                User(
                    id=uuid.uuid4(),
                    email=email,
                    display_name=email.split("@", 1)[0][:100],
                    password_hash=hashed,
                    is_admin=True,
                    email_verified=True,
                )
            )
            return f"created admin {email}"
    finally:
        await database.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m auth_service.admin")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-admin", help="make EMAIL an admin (creating it if new)")
    create.add_argument("email")
    args = parser.parse_args(argv)
    try:
        email = str(TypeAdapter(Email).validate_python(args.email))
        print(asyncio.run(create_admin(Settings(), email)))
    except ValidationError as exc:
        sys.exit(f"invalid input: {exc.errors()[0]['msg']}")


if __name__ == "__main__":
    main()
