"""Changing ledger rows behind the ledger's back, as only someone with the database owner's
rights could: what the verifier and closing must notice."""

from __future__ import annotations

from sqlalchemy import text

from exchange.db.database import Database


async def tamper(db: Database, statement: str) -> None:
    """Run ``statement`` on the ledger's tables with their append-only guards lifted."""
    async with db.transaction() as session:
        if db.dialect == "postgresql":
            await session.exec(text("ALTER TABLE ledger_entry DISABLE TRIGGER USER"))
            await session.exec(text("ALTER TABLE ledger_transaction DISABLE TRIGGER USER"))
        else:
            for name in ("ledger_entry_no_update", "ledger_transaction_no_update"):
                await session.exec(text(f"DROP TRIGGER IF EXISTS {name}"))
        await session.exec(text(statement))
