"""An unknown program id is refused with the ids there are, so that a typo can be put right."""

from __future__ import annotations

from exchange.programs.service import ProgramNotFound


def test_an_unknown_program_lists_the_known_ids_and_no_more_than_a_dozen() -> None:
    assert str(ProgramNotFound("nope")) == "no program has id 'nope'"
    assert str(ProgramNotFound("nope", known=["b", "a"])) == "no program has id 'nope'; the programs are a, b"
    many = [f"p{n:02}" for n in range(15)]
    assert str(ProgramNotFound("nope", known=many)).endswith("p10, p11 and 3 more")
