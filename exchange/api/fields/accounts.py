"""Linking and unlinking a member's accounts at partners (the federated view itself hangs off ``Member``)."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.inputs import Text
from exchange.api.permissions import authorize, requires
from exchange.api.types.members import LinkedAccount, UnlinkedAccount
from exchange.auth.scopes import Scope
from exchange.members.models import MEMBER_REF_MAX_LENGTH
from exchange.members.validation import NAME_MAX_LENGTH

#: The longest verification value (a PIN, a code) passed on to a partner.
VERIFICATION_LENGTH = 128


@strawberry.type
class AccountMutations:
    @strawberry.mutation(
        description="Link your account `memberRef` at a program: its partner checks "
        "`verification` (a value it gave you, such as a PIN) before the link is made. Linking "
        "the same account again is a no-op. Give `name` as the program has it to have it checked "
        "(case, width, spacing, punctuation and the order of Latin names do not matter); a program "
        "that refuses name mismatches requires it. Refused with `NAME_MISMATCH`, or, for an account "
        "the partner reports ineligible, `ACCOUNT_INACTIVE`, `ACCOUNT_SUSPENDED`, "
        "`ACCOUNT_NOT_ACTIVATED` or `TIER_NOT_ALLOWED` (`extensions.field`, `extensions.eligibility`). "
        "Proofs that fail are limited: `EXCHANGE_TOKEN_FAILURE_LIMIT` per account and member within "
        "`EXCHANGE_TOKEN_FAILURE_WINDOW` seconds (ten times as many per account from every member, "
        "and per member over every account); past that, `LIMIT_EXCEEDED` (`extensions.limit` "
        "link_attempts, `extensions.retryAfter` seconds) and the partner is not asked.",
        extensions=[authorize(requires(Scope.MEMBER_WRITE))],
    )
    async def link_account(
        self,
        info: Info[Context, None],
        program_id: Annotated[strawberry.ID, strawberry.argument(description="The program (`Program.id`).")],
        member_ref: Annotated[
            str,
            Text(MEMBER_REF_MAX_LENGTH),
            strawberry.argument(
                description="Your id at the program (letters A-Z a-z, digits and `. _ : @ + -`, at least one; "
                "not `.` or `..` alone)."
            ),
        ],
        verification: Annotated[
            str,
            Text(VERIFICATION_LENGTH),
            strawberry.argument(description="What the partner gave you to prove the account is yours (a PIN, a code)."),
        ],
        name: Annotated[
            str | None,
            Text(NAME_MAX_LENGTH),
            strawberry.argument(description="Your name, as the program has it on your account."),
        ] = None,
    ) -> LinkedAccount | None:
        row = await info.context.services.members.link_account(
            info.context.caller(), str(program_id), member_ref, verification, name=name
        )
        return LinkedAccount.from_row(row)

    @strawberry.mutation(
        description="Unlink your account `memberRef` at a program. The link goes; your conversions, "
        "redemptions, status matches and their ledger entries stay, and the account no longer shows in "
        "`me.accounts` (at once: no cached balance outlives it). Link it again with `linkAccount` (its "
        "partner checks it anew). Unlinking it again answers with the first unlink (`alreadyUnlinked`). "
        "An account that is not yours is `NOT_FOUND`. Refused with `UNLINK_REFUSED` (nothing changed; "
        "`extensions.rule`): `SAGA_IN_PROGRESS` while a conversion, redemption or status match through it "
        "is unfinished (`extensions.saga`, `extensions.sagaId`), `SIGNED_IN_THROUGH` for the program that "
        "asserted your token, `COALITION_ACCOUNT` for the coalition point's account. Partner tokens cannot "
        "unlink.",
        extensions=[authorize(requires(Scope.MEMBER_WRITE))],
    )
    async def unlink_account(
        self,
        info: Info[Context, None],
        program_id: Annotated[strawberry.ID, strawberry.argument(description="The program (`Program.id`).")],
        member_ref: Annotated[
            str,
            Text(MEMBER_REF_MAX_LENGTH),
            strawberry.argument(
                description="Your id at the program, as linked: a retry unlinks only the account it named."
            ),
        ],
    ) -> UnlinkedAccount | None:
        unlinked = await info.context.services.members.unlink_account(
            info.context.caller(), str(program_id), member_ref
        )
        return UnlinkedAccount.of(unlinked)
