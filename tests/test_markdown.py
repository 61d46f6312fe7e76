"""Markdown tables in metadata: a value can never break its row or add a column."""

from pipeline.markdown import markdown_table


def test_cells_are_escaped_and_flattened():
    table = markdown_table(["file", "message"], [("users.csv", "a|b\\c\r\nnext"), ("terms.csv", None), ("x", 0)])
    assert table.splitlines() == [
        "| file | message |",
        "|---|---|",
        "| users.csv | a\\|b\\\\c  next |",
        "| terms.csv |  |",
        "| x | 0 |",
    ]
