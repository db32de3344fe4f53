"""The whole suite's recap (tests/run_in_parallel.py): a CI page keeps only the output's tail,
where the half that ended last is printed whole; the recap after it names what failed in either."""

from __future__ import annotations

from pathlib import Path

from tests.run_in_parallel import outcome


def test_the_recap_names_each_failing_test_and_the_closing_line(tmp_path: Path) -> None:
    log = tmp_path / "pytest.log"
    log.write_text(
        "tests/unit/test_a.py ..F\n"
        "=========================== short test summary info ============================\n"
        "SKIPPED [1] tests/unit/test_b.py:3: no browser\n"
        "FAILED tests/unit/test_a.py::test_three - assert 1 == 2\n"
        "ERROR tests/unit/test_c.py::test_four - RuntimeError: no cluster\n"
        "============= 1 failed, 2 passed, 1 skipped, 1 error in 3.00s ==============\n"
    )
    assert outcome(log) == [
        "FAILED tests/unit/test_a.py::test_three - assert 1 == 2",
        "ERROR tests/unit/test_c.py::test_four - RuntimeError: no cluster",
        "============= 1 failed, 2 passed, 1 skipped, 1 error in 3.00s ==============",
    ]
    log.write_text("tests/unit/test_a.py ...\n======== 3 passed in 1.00s ========\n\n")
    assert outcome(log) == ["======== 3 passed in 1.00s ========"]
