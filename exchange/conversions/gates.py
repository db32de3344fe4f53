"""A conversion as the risk gates (:mod:`exchange.risk.gates`) see it: a way points leave the
member's account at its source program, screened before its first debit, in the unit of work
that records it, after its row is inserted and before anything is sent to a partner."""

from __future__ import annotations

from sqlmodel import col

from exchange.conversions.models import Conversion, ConversionStatus
from exchange.risk.gates import Outflow, Way
from exchange.risk.models import Subject

#: Conversions out of a program, as velocity counts them and a hold holds them.
CONVERSIONS_OUT = Way(
    subject=Subject.CONVERSION,
    table=Conversion,
    id=col(Conversion.id),
    member_id=col(Conversion.member_id),
    program=col(Conversion.from_program),
    member_ref=col(Conversion.source_ref),
    points=col(Conversion.points_in),
    status=col(Conversion.status),
    created_at=col(Conversion.created_at),
    moved_nothing=(ConversionStatus.FAILED.value, ConversionStatus.REVERSED.value),
)


def outflow(conversion: Conversion) -> Outflow:
    """What ``conversion`` takes from the member's account at its source."""
    return Outflow(
        way=CONVERSIONS_OUT,
        id=conversion.id,
        member_id=conversion.member_id,
        program_id=conversion.from_program,
        member_ref=conversion.source_ref,
        points=conversion.points_in,
        to_program=conversion.to_program,
        field="quoteId",
    )
