"""``DataFrameType``: every kind of violation, all of them reported at once, and what a
step failing its type check shows in STEP_FAILURE."""

from __future__ import annotations

import subprocess
import sys

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from plait import EventType, Instance, PlaitType, job, op
from plait_pandas import Column, DataFrameType

Orders = DataFrameType(
    "orders",
    columns={
        "id": Column("int64", unique=True),
        "amount": Column("float64", non_negative=True),
        "region": Column("object", nullable=False, isin={"north", "south"}),
    },
)


def good_orders() -> pd.DataFrame:
    return pd.DataFrame(
        {"id": [1, 2, 3], "amount": [1.5, 0.0, 3.0], "region": ["north", "south", "north"]}
    )


def checks(violations: list) -> list[tuple[object, str]]:
    return [(v.column, v.check) for v in violations]


# ---- one violation of each kind -------------------------------------------------------


def test_a_fitting_frame_passes() -> None:
    assert isinstance(Orders, PlaitType)
    assert Orders.violations(good_orders()) == []
    assert Orders.check(good_orders()).success


def test_extra_columns_pass_unless_strict() -> None:
    df = good_orders().assign(note="x", other=1)
    assert Orders.violations(df) == []
    strict = DataFrameType("orders", columns=Orders.columns, strict=True)
    [v] = strict.violations(df)
    assert v.check == "unexpected" and "'note', 'other'" in v.message


def test_not_a_dataframe() -> None:
    result = Orders.check([1, 2])
    assert not result.success
    assert result.description == "got list [1, 2], not a pandas DataFrame"


def test_missing_column() -> None:
    [v] = Orders.violations(good_orders().drop(columns="amount"))
    assert (v.column, v.check, v.message) == ("amount", "missing", "column 'amount' is missing")


def test_wrong_dtype() -> None:
    [v] = Orders.violations(good_orders().astype({"id": "int32"}))
    assert (v.column, v.check) == ("id", "dtype")
    assert v.message == "column 'id' has dtype int32, expected int64"


def test_nulls_in_a_non_nullable_column() -> None:
    df = good_orders()
    df.loc[1, "region"] = None
    [v] = Orders.violations(df)
    assert (v.column, v.check, v.count) == ("region", "nullable", 1)
    assert "index 1" in v.message


def test_duplicates_in_a_unique_column() -> None:
    df = pd.DataFrame({"id": [7, 7, 8, 8, 8], "amount": 1.0, "region": "north"})
    [v] = Orders.violations(df)
    assert (v.column, v.check, v.count) == ("id", "unique", 3)
    assert v.examples == [7, 8, 8]


def test_negative_values() -> None:
    df = good_orders()
    df.loc[2, "amount"] = -4.25
    [v] = Orders.violations(df)
    assert (v.column, v.check, v.count) == ("amount", "non_negative", 1)
    assert "-4.25 at index 2" in v.message


def test_values_outside_the_allowed_set() -> None:
    df = good_orders()
    df.loc[0, "region"] = "east"
    [v] = Orders.violations(df)
    assert (v.column, v.check) == ("region", "isin")
    assert "not in {'north', 'south'}" in v.message and "'east' at index 0" in v.message


def test_constraints_ignore_nulls() -> None:
    T = DataFrameType(
        "t", columns={"x": Column("float64", unique=True, non_negative=True, isin={1.0})}
    )
    assert T.violations(pd.DataFrame({"x": [1.0, np.nan, np.nan]})) == []


def test_a_constraint_that_cannot_apply_says_so() -> None:
    T = DataFrameType("t", columns={"x": Column(non_negative=True)})
    [v] = T.violations(pd.DataFrame({"x": ["a", "b"]}))
    assert (v.column, v.check) == ("x", "non_negative")
    assert v.message.startswith("column 'x' (dtype ")
    assert "cannot be checked for non_negative" in v.message


def test_a_repeated_column_label() -> None:
    T = DataFrameType("t", columns={"id": "int64"})
    [v] = T.violations(pd.DataFrame([[1, 2]], columns=["id", "id"]))
    assert (v.column, v.check, v.message) == (
        "id",
        "duplicate_column",
        "column 'id' appears 2 times",
    )


# ---- dtypes: exact names, families, text across pandas versions -----------------------


@pytest.mark.parametrize(
    ("spec", "series", "fits"),
    [
        ("int64", pd.Series([1, 2]), True),
        ("int64", pd.Series([1, 2], dtype="Int64"), False),
        ("Int64", pd.Series([1, None], dtype="Int64"), True),
        ("integer", pd.Series([1, 2], dtype="uint8"), True),
        ("integer", pd.Series([1.0]), False),
        ("floating", pd.Series([1.0], dtype="float32"), True),
        ("numeric", pd.Series([1, 2]), True),
        ("numeric", pd.Series([True]), False),
        ("datetime", pd.Series(pd.date_range("2024", periods=2, tz="UTC")), True),
        (
            "datetime64[ns]",
            pd.Series(pd.to_datetime(["2024-01-01"]).astype("datetime64[ns]")),
            True,
        ),
        ("category", pd.Series(["a", "b"], dtype="category"), True),
        ("bool", pd.Series([True, False]), True),
        ("text", pd.Series(["a", None]), True),
        ("text", pd.Series(["a", None], dtype=object), True),
        ("text", pd.Series(["a", 1], dtype=object), False),
        ("str", pd.Series(["a"], dtype="string"), True),
        ("object", pd.Series(["a", "b"]), True),  # pandas >= 3 stores text as str
        ("object", pd.Series([{"a": 1}]), True),
        ("object", pd.Series([1]), False),
    ],
)
def test_dtype_matching(spec: str, series: pd.Series, fits: bool) -> None:
    T = DataFrameType("t", columns={"c": spec})
    assert (T.violations(pd.DataFrame({"c": series})) == []) is fits


def test_bad_specs_fail_at_definition() -> None:
    with pytest.raises(ValueError, match="'int46' is neither a pandas dtype"):
        Column("int46")
    with pytest.raises(TypeError, match="not a single string"):
        Column("object", isin="north")


# ---- every violation, together --------------------------------------------------------


def dirty_orders() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 1, 2, 3],
            "amount": [5.0, -1.0, 2.0, -3.0],
            "region": ["north", "east", None, "west"],
            "unexpected": 0,
        }
    )


def test_all_violations_are_reported_together() -> None:
    strict = DataFrameType(
        "orders", columns={**Orders.columns, "customer": Column("text")}, strict=True
    )
    found = strict.violations(dirty_orders())
    assert checks(found) == [
        ("customer", "missing"),
        (None, "unexpected"),
        ("id", "unique"),
        ("amount", "non_negative"),
        ("region", "nullable"),
        ("region", "isin"),
    ]
    result = strict.check(dirty_orders())
    assert not result.success
    assert result.description.startswith("found 6 problem(s) in a DataFrame of 4 row(s):")
    for v in found:
        assert v.message in result.description
    assert [v["check"] for v in result.metadata["violations"]] == [c for _, c in checks(found)]


def test_a_step_failing_its_type_check_lists_every_violation() -> None:
    @op
    def make() -> pd.DataFrame:
        return dirty_orders()

    @op
    def clean(df: Orders) -> Orders:
        return df

    @job
    def etl():
        clean(make())

    result = etl.execute(instance=Instance.ephemeral(), raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.events if e.event_type is EventType.STEP_FAILURE]
    assert failure.step_key == "clean"
    assert "input 'df' of op 'clean' failed its type check: expected orders" in failure.message
    for fragment in (
        "column 'id' has 1 duplicated value(s), e.g. 1 at index 1",
        "column 'amount' has 2 negative value(s), e.g. -1.0 at index 1, -3.0 at index 3",
        "column 'region' has 1 null value(s) (nullable=False), e.g. index 2",
        "column 'region' has 2 value(s) not in {'north', 'south'}, e.g. 'east' at index 1, "
        "'west' at index 3",
    ):
        assert fragment in failure.message
    starts = [e for e in result.events if e.event_type is EventType.STEP_START]
    assert [e.step_key for e in starts] == ["make", "clean"]  # a type error is not retried


def test_outputs_are_checked_too() -> None:
    @op
    def emit() -> Orders:
        return good_orders().drop(columns="id")

    @job
    def j():
        emit()

    result = j.execute(instance=Instance.ephemeral(), raise_on_error=False)
    [failure] = [e for e in result.events if e.event_type is EventType.STEP_FAILURE]
    assert "output 'result' of op 'emit' failed its type check" in failure.message
    assert "column 'id' is missing" in failure.message


def test_events_name_the_type_and_a_passing_frame_runs() -> None:
    @op
    def emit() -> Orders:
        return good_orders()

    @job
    def j():
        emit()

    result = j.execute(instance=Instance.ephemeral())
    [out] = [e for e in result.events if e.event_type is EventType.STEP_OUTPUT]
    assert out.data["type"] == "orders"


# ---- plumbing -------------------------------------------------------------------------


def test_the_type_pickles_with_its_columns() -> None:
    copy = cloudpickle.loads(cloudpickle.dumps(Orders))
    assert copy.columns == Orders.columns
    assert checks(copy.violations(dirty_orders())) == checks(Orders.violations(dirty_orders()))


def test_description_summarises_the_columns() -> None:
    assert Orders.description == (
        "DataFrame with columns 'id': int64, unique; 'amount': float64, >= 0; "
        "'region': object, not null, in {'north', 'south'}"
    )


def test_import_plait_does_not_import_pandas() -> None:
    code = (
        "import sys, plait\n"
        "plait.op, plait.job, plait.Instance, plait.PlaitType\n"
        "import plait_pandas\n"  # lazy: names load on first use
        "bad = sorted(m for m in ('pandas', 'pyarrow', 'plait_pandas._types') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
