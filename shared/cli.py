"""The `switchboard` command for operators.

    switchboard migrate                      # alembic upgrade head, from any directory
    switchboard create-admin --email E       # password: --password, $SWITCHBOARD_ADMIN_PASSWORD
                                             # or prompted; creates the user or promotes it
    switchboard rotate-keys                  # re-encrypt stored provider keys (newest key)
    switchboard dev                          # API + all-queues worker + Flower (shared/devserver)
    switchboard worker -Q openai             # a Celery worker for some or all provider queues

Sub-commands live in COMMANDS (name -> Command).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ADMIN_PASSWORD_ENV = "SWITCHBOARD_ADMIN_PASSWORD"
MIN_PASSWORD_LENGTH = 8  # as api/schemas/auth.py asks of registrations

# The checkout this package runs from: alembic.ini and alembic/ sit next to shared/.
REPO_ROOT = Path(__file__).resolve().parent.parent


class CommandError(Exception):
    """A failure to report as one line on stderr, with exit status 1."""


@dataclass(frozen=True)
class Command:
    help: str
    run: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None


# ---------------------------------------------------------------------------------------------
# migrate
# ---------------------------------------------------------------------------------------------


def find_alembic_ini() -> Path:
    """alembic.ini of the checkout this package runs from, else of the current directory."""
    for base in (REPO_ROOT, Path.cwd()):
        candidate = base / "alembic.ini"
        if candidate.is_file() and (base / "alembic" / "env.py").is_file():
            return candidate
    raise CommandError(
        "cannot find alembic.ini and alembic/ (looked in "
        f"{REPO_ROOT} and {Path.cwd()}); run from a Switchboard checkout"
    )


def alembic_config(database_url: str | None = None):  # type: ignore[no-untyped-def]
    """An Alembic Config usable from any cwd; `database_url` overrides DATABASE_URL."""
    from alembic.config import Config

    ini = find_alembic_ini()
    config = Config(str(ini))
    config.set_main_option("script_location", str(ini.parent / "alembic"))
    # Logging is set up by the caller (see _alembic_logging), not by alembic.ini.
    config.attributes["configure_logger"] = False
    if database_url:
        config.attributes["sqlalchemy.url"] = database_url
    return config


@contextmanager
def _alembic_logging() -> Iterator[None]:
    """Show alembic's "Running upgrade ..." lines on stderr for the duration of a command."""
    logger = logging.getLogger("alembic")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def cmd_migrate(args: argparse.Namespace) -> int:
    import alembic.command as command

    from shared.settings import get_settings

    url = get_settings().DATABASE_URL
    config = alembic_config(url)
    with _alembic_logging():
        command.upgrade(config, args.revision)
    print(f"Database {_safe_url(url)} upgraded to {args.revision}.")
    return 0


def _migrate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "revision", nargs="?", default="head", help="target revision (default: head)"
    )


# ---------------------------------------------------------------------------------------------
# create-admin
# ---------------------------------------------------------------------------------------------


def _normalise_email(email: str) -> str:
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise CommandError(f"invalid email address: {exc}") from None
    return email.strip().lower()  # as shared.accounts does for registrations


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise CommandError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return password


def _supplied_password(args: argparse.Namespace) -> str | None:
    password = args.password or os.environ.get(ADMIN_PASSWORD_ENV) or None
    return _check_password(password) if password is not None else None


def _can_prompt() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _prompt_password() -> str:
    if not _can_prompt():
        raise CommandError(
            f"no password given: use --password or ${ADMIN_PASSWORD_ENV} "
            "(stdin is not a terminal, so it cannot be prompted for)"
        )
    try:
        password = getpass.getpass("Password for the new admin: ")
        again = getpass.getpass("Repeat the password: ")
    except (EOFError, KeyboardInterrupt):
        raise CommandError(f"no password given (use --password or ${ADMIN_PASSWORD_ENV})") from None
    if password != again:
        raise CommandError("the passwords do not match")
    return _check_password(password)


def cmd_create_admin(args: argparse.Namespace) -> int:
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError, ProgrammingError
    from sqlalchemy.orm import Session

    from shared.db import make_engine
    from shared.models import User
    from shared.security import hash_password
    from shared.settings import get_settings

    email = _normalise_email(args.email)
    password = _supplied_password(args)
    engine = make_engine(get_settings().DATABASE_URL, pool_size=1, max_overflow=0)
    try:
        with Session(engine) as session, session.begin():
            user = session.scalar(select(User).where(User.email == email))
            if user is None:
                user = User(
                    email=email,
                    password_hash=hash_password(password or _prompt_password()),
                    is_admin=True,
                )
                session.add(user)
                outcome = "Created admin user"
            else:
                user.is_admin = True
                # Promoting keeps the user's password unless a new one was supplied.
                if password is not None:
                    user.password_hash = hash_password(password)
                outcome = "Promoted existing user to admin"
                if password is not None:
                    outcome += " and set a new password"
            session.flush()
            user_id = user.id
            inactive = not user.is_active
    except (OperationalError, ProgrammingError) as exc:
        raise CommandError(
            "cannot write the users table; has the database been migrated "
            f"(switchboard migrate)? {type(exc.orig).__name__}"
        ) from None
    finally:
        engine.dispose()
    print(f"{outcome}: {email} (id {user_id}).")
    if inactive:
        print("Note: this user is deactivated (is_active = false) and cannot log in.")
    return 0


def _create_admin_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--email", required=True, help="the admin's email (login name)")
    parser.add_argument(
        "--password",
        help=f"the password (else ${ADMIN_PASSWORD_ENV}, else prompted); "
        "for an existing user, omit it to keep the current password",
    )


# ---------------------------------------------------------------------------------------------
# rotate-keys
# ---------------------------------------------------------------------------------------------


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError, ProgrammingError
    from sqlalchemy.orm import Session

    from shared.db import make_engine
    from shared.models.provider import ProviderConfigRow
    from shared.providers.keys import InvalidKeyToken, ProviderKeyBox, ProviderKeysUnavailable
    from shared.settings import get_settings

    settings = get_settings()
    box = ProviderKeyBox.from_settings(settings)
    if not box.available:
        raise CommandError(str(ProviderKeysUnavailable()))
    engine = make_engine(settings.DATABASE_URL, pool_size=1, max_overflow=0)
    try:
        # One transaction: either every stored key is under the newest secret key, or (one
        # token no configured key opens) none was touched and the old secret still works.
        with Session(engine) as session, session.begin():
            rows = session.scalars(
                select(ProviderConfigRow)
                .where(ProviderConfigRow.api_key_encrypted.is_not(None))
                .order_by(ProviderConfigRow.provider_name)
                .with_for_update()
            ).all()
            unreadable = []
            for row in rows:
                try:
                    row.api_key_encrypted = box.rotate(row.api_key_encrypted or "")
                except InvalidKeyToken:
                    unreadable.append(row.provider_name)
            if unreadable:
                raise CommandError(
                    "no key in PROVIDER_KEYS_SECRET decrypts the stored key of "
                    f"{', '.join(unreadable)}: nothing was rotated (put back the key that "
                    "encrypted it, after the new one, and run rotate-keys again)"
                )
            rotated = len(rows)
    except (OperationalError, ProgrammingError) as exc:
        raise CommandError(
            "cannot update provider_configs; has the database been migrated "
            f"(switchboard migrate)? {type(exc.orig).__name__}"
        ) from None
    finally:
        engine.dispose()
    print(f"Rotated {rotated} stored provider key(s) to the newest PROVIDER_KEYS_SECRET key.")
    return 0


# ---------------------------------------------------------------------------------------------
# Registry and entry point
# ---------------------------------------------------------------------------------------------

COMMANDS: dict[str, Command] = {
    "migrate": Command(
        help="apply the database migrations (alembic upgrade head) to DATABASE_URL",
        run=cmd_migrate,
        add_arguments=_migrate_arguments,
    ),
    "create-admin": Command(
        help="create an admin user, or promote an existing user to admin",
        run=cmd_create_admin,
        add_arguments=_create_admin_arguments,
    ),
    "rotate-keys": Command(
        help="re-encrypt every stored provider key under the newest PROVIDER_KEYS_SECRET key",
        run=cmd_rotate_keys,
    ),
    "dev": Command(
        help="start API, an all-queues worker and Flower on embedded defaults (Ctrl-C stops)",
        run=lambda args: _devserver().cmd_dev(args),
        add_arguments=lambda parser: _devserver().add_dev_arguments(parser),
    ),
    "worker": Command(
        help="run a Celery worker (gevent pool) for some or all provider queues",
        run=lambda args: _devserver().cmd_worker(args),
        add_arguments=lambda parser: _devserver().add_worker_arguments(parser),
    ),
}


def _devserver():  # type: ignore[no-untyped-def]
    # Imported on use: it pulls in redis and the provider catalog, which migrate does not need.
    from shared import devserver

    return devserver


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard", description="Switchboard operator commands."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, spec in COMMANDS.items():
        sub = subparsers.add_parser(name, help=spec.help, description=spec.help)
        spec.add_arguments(sub)
        sub.set_defaults(_run=spec.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from shared.settings import InvalidSettings

    args = build_parser().parse_args(argv)
    try:
        return args._run(args)
    except (CommandError, InvalidSettings) as exc:
        print(f"switchboard {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
