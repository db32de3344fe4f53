"""Every domain package's tables, imported in one place so ``SQLModel.metadata`` is whole.

Alembic's environment and the migration drift test import this module; application code
imports the models it needs from their own packages.
"""

from exchange.auth.models import (
    ClientAuthFailure,
    OAuthClient,
    PartnerAssertionKey,
    RevokedToken,
    SigningKey,
    UsedAssertion,
)
from exchange.members.models import LinkedAccount, Member
from exchange.programs.models import CoalitionLevel, CoalitionSettings, Program, ProgramTier

__all__ = [
    "ClientAuthFailure",
    "CoalitionLevel",
    "CoalitionSettings",
    "LinkedAccount",
    "Member",
    "OAuthClient",
    "PartnerAssertionKey",
    "Program",
    "ProgramTier",
    "RevokedToken",
    "SigningKey",
    "UsedAssertion",
]
