from exchange.db.grouping import grouped


def test_rows_are_grouped_by_key_in_the_order_they_came() -> None:
    rows = [("a", 1), ("b", 2), ("a", 3)]
    assert grouped(rows, lambda row: row[0]) == {"a": [("a", 1), ("a", 3)], "b": [("b", 2)]}


def test_a_key_with_no_rows_is_absent() -> None:
    assert grouped([], lambda row: row) == {}
