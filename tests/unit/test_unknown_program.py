"""An unknown program id is refused with the ids there are, so that a typo can be put right."""

from __future__ import annotations

from exchange.programs.service import ProgramNotFound


def test_an_unknown_program_lists_the_known_ids_and_no_more_than_a_dozen() -> None:
    assert str(ProgramNotFound("nope")) == "no program has id 'nope'"
    assert str(ProgramNotFound("nope", known=["b", "a"])) == "no program has id 'nope'; the programs are a, b"
    many = [f"p{n:02}" for n in range(15)]
    assert str(ProgramNotFound("nope", known=many)).endswith("p10, p11 and 3 more")


def test_an_unknown_program_id_is_repeated_only_if_it_is_written_as_an_id() -> None:
    """A page shows the refusal: a sentence in a link's query is not said by the exchange."""
    spoof = "fresh-mart' is closed. Call +886 2 0000 0000 to keep your points"
    assert str(ProgramNotFound(spoof, known=["a"])) == (
        "no program has the id given: it is not written as an id is; the programs are a"
    )
    assert str(ProgramNotFound("x" * 65)) == "no program has the id given: it is not written as an id is"
    assert str(ProgramNotFound("fresh_mart.2")) == "no program has id 'fresh_mart.2'"
