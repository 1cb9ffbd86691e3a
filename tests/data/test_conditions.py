"""Sample-space conditions (``where``): parsing and evaluation against pyarrow tables."""

from __future__ import annotations

import pyarrow as pa
import pytest

from polytask.data.conditions import evaluate_condition, parse_condition
from polytask.errors import DataError


def test_parse_single_clauses():
    assert parse_condition("click == 1") == [("click", "==", 1)]
    assert parse_condition("  price>=2.5 ") == [("price", ">=", 2.5)]
    assert parse_condition("x < -3") == [("x", "<", -3)]
    assert parse_condition("x != 1e3") == [("x", "!=", 1000.0)]
    assert parse_condition("country == 'US'") == [("country", "==", "US")]
    assert parse_condition('country != "U S"') == [("country", "!=", "U S")]
    assert parse_condition("a.b <= 0") == [("a.b", "<=", 0)]


def test_parse_and_joined():
    assert parse_condition("click == 1 and country != 'US' AND age > 18") == [
        ("click", "==", 1), ("country", "!=", "US"), ("age", ">", 18)]


def test_bare_word_is_a_string():
    assert parse_condition("country == US") == [("country", "==", "US")]


def test_and_inside_quotes_is_part_of_the_value():
    assert parse_condition("country == 'Trinidad and Tobago' and click == 1") == [
        ("country", "==", "Trinidad and Tobago"), ("click", "==", 1)]
    assert parse_condition('shop == "Marks and Spencer"') == [("shop", "==", "Marks and Spencer")]


def test_column_name_containing_and_is_not_split():
    assert parse_condition("brand == 1 and andes > 2") == [("brand", "==", 1), ("andes", ">", 2)]


@pytest.mark.parametrize("text", [
    "click", "click = 1", "== 1", "click == 1 and", "1 == click", "country == 'US", "a == 1 or b == 2"])
def test_unparseable_is_an_error(text):
    with pytest.raises(DataError, match="where"):
        parse_condition(text)


TABLE = pa.table({
    "click": pa.array([1, 0, 1, None, 1, 0]),
    "price": pa.array([1.0, 2.5, 3.0, 4.0, None, 0.5]),
    "country": pa.array(["US", "FR", None, "US", "Trinidad and Tobago", "FR"]),
    "flag": pa.array(["1", "0", "1", "1", None, "0"]),
})


@pytest.mark.parametrize("text, expected", [
    ("click == 1", [1, 0, 1, 0, 1, 0]),
    ("click != 1", [0, 1, 0, 0, 0, 1]),  # null != 1 is False, not True
    ("price >= 2.5", [0, 1, 1, 1, 0, 0]),
    ("price < 2.5", [1, 0, 0, 0, 0, 1]),
    ("price > 1", [0, 1, 1, 1, 0, 0]),
    ("price <= 1", [1, 0, 0, 0, 0, 1]),
    ("country == 'US'", [1, 0, 0, 1, 0, 0]),
    ("country != 'US'", [0, 1, 0, 0, 1, 1]),
    ("country == 'Trinidad and Tobago'", [0, 0, 0, 0, 1, 0]),
    ("click == 1 and country == 'US'", [1, 0, 0, 0, 0, 0]),
    ("click == 1 and price >= 1 and country != 'FR'", [1, 0, 0, 0, 0, 0]),
    ("flag == 1", [1, 0, 1, 1, 0, 0]),  # numeric value against a string column
    ("click == '1'", [1, 0, 1, 0, 1, 0]),  # string value against an integer column
])
def test_evaluate(text, expected):
    mask = evaluate_condition(TABLE, text, "t.csv")
    assert mask.dtype == bool and mask.shape == (TABLE.num_rows,)
    assert mask.astype(int).tolist() == expected


def test_evaluate_on_chunked_columns():
    table = pa.concat_tables([TABLE.slice(0, 2), TABLE.slice(2)])
    assert table.column("click").num_chunks == 2
    assert evaluate_condition(table, "click == 1").tolist() == evaluate_condition(TABLE, "click == 1").tolist()


def test_missing_column_named():
    with pytest.raises(DataError) as exc:
        evaluate_condition(TABLE, "click == 1 and clicked == 1", "val.parquet")
    assert "'clicked'" in str(exc.value) and "val.parquet" in str(exc.value)


def test_numeric_value_against_non_numeric_strings_is_an_error():
    with pytest.raises(DataError, match="'country'"):
        evaluate_condition(TABLE, "country == 1", "t.csv")
