"""The columns every saga table carries: where its saga stands and when to try it next.

A table model inherits them (``class Conversion(SagaState, table=True)``); no column here
uses ``sa_column``, so each table gets columns of its own.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from exchange.db.types import UTCDateTime

#: The step of a saga that has nothing left to do.
DONE = "DONE"
#: The longest failure or error message a saga row keeps (cut to fit).
MESSAGE_LENGTH = 500


class SagaState(SQLModel):
    status: str = Field(max_length=10)
    step: str = Field(max_length=15, description="The next thing the saga must do (DONE: nothing).")
    in_doubt: bool = Field(default=False, description="The current step's request may have been applied.")
    failure_code: str | None = Field(default=None, max_length=40)
    failure_message: str | None = Field(default=None, max_length=MESSAGE_LENGTH)
    attempts: int = 0
    last_error: str | None = Field(
        default=None,
        max_length=MESSAGE_LENGTH,
        description="Why the current step was last put off to be asked again (null once the row moves on).",
    )
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
