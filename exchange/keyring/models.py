"""What every kind of signing key stores: the columns and constraints its table shares."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, Text, text
from sqlmodel import Field, SQLModel

from exchange.db.types import UTCDateTime

ACTIVE = "active"
RETIRED = "retired"


class StoredKey(SQLModel):
    """A signing key: the public JWK in clear, the private JWK as a JWE (see
    :mod:`exchange.keyring.crypto`). One key of a kind is ``active`` (signs); ``retired``
    keys only verify, for as long as their kind publishes them."""

    kid: str = Field(primary_key=True, max_length=64)
    algorithm: str = Field(max_length=10)
    public_jwk: dict[str, Any] = Field(sa_type=JSON, nullable=False)
    encrypted_private_key: str = Field(sa_type=Text)
    state: str = Field(max_length=10)
    created_at: datetime = Field(sa_type=UTCDateTime)
    retired_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


def key_table_constraints(table: str) -> tuple[Any, ...]:
    """The ``__table_args__`` of a key table: known states, a retirement time exactly when
    retired, and at most one active key (the partial unique index that lets the first of
    several starting replicas create the key and the others yield)."""
    return (
        CheckConstraint(f"state IN ('{ACTIVE}', '{RETIRED}')", name=f"{table}_state"),
        CheckConstraint(f"(state = '{ACTIVE}') = (retired_at IS NULL)", name=f"{table}_retired_at"),
        Index(
            f"{table}_one_active",
            "state",
            unique=True,
            postgresql_where=text(f"state = '{ACTIVE}'"),
            sqlite_where=text(f"state = '{ACTIVE}'"),
        ),
    )
