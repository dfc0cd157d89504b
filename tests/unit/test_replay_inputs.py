"""The extra files a replay reads (`fairvalue replay --floor/--eth-usd/--sales`): a file that
cannot be read as what it claims is refused whole, with its path and why, never read as nothing."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fairvalue.cli import app
from storage.bundled import BadMarketFile, market_data_from_files, read_market_days

runner = CliRunner()
BUNDLED = Path(__file__).resolve().parents[2] / "data" / "cryptopunks"
WINDOW = ["replay", "--from", "2021-12-15", "--to", "2021-12-22", "--source", "bundled"]


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_market_file_without_its_columns_is_refused_not_read_as_no_days(tmp_path):
    floor = write(tmp_path, "floor.csv", "day,price\n2021-12-01,60\n")
    eth_usd = write(tmp_path, "eth.csv", "date,price\n2021-12-01,4600\n")
    with pytest.raises(BadMarketFile, match=r"floor.csv: line 1: the header names day, price; the file needs the "
                                            r"columns date, floor_eth"):
        read_market_days(floor, None)
    with pytest.raises(BadMarketFile, match="needs the columns date, eth_usd"):
        read_market_days(None, eth_usd)
    with pytest.raises(BadMarketFile, match="the file is empty; it needs the columns date, floor_eth"):
        read_market_days(write(tmp_path, "empty.csv", ""), None)
    good = write(tmp_path, "good.csv", "date,floor_eth\n2021-12-01,60\n2021-12-02,\n")
    assert read_market_days(good, None) == {date(2021, 12, 1): {"floor": 60.0}}


@pytest.mark.parametrize("option", ["--floor", "--eth-usd"])
def test_replay_refuses_a_market_file_with_the_wrong_header_on_one_line(tmp_path, option):
    path = write(tmp_path, "market.csv", "day,price\n2021-12-01,60\n")
    result = runner.invoke(app, [*WINDOW, option, str(path), "--json"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "needs the columns date," in lines[0], result.stderr


@pytest.mark.parametrize(("lines", "problem"), [
    ("2021-12-01,abc\n", "line 3: floor_eth 'abc' is not a number"),
    ("not-a-date,60\n", "line 3: date 'not-a-date' is not a day (YYYY-MM-DD)"),
    ("2021-12-01,0\n", "line 3: floor_eth 0 must be a number above 0"),
    ("2021-12-01,-5\n", "line 3: floor_eth -5 must be a number above 0"),
    ("2021-12-01,nan\n", "line 3: floor_eth nan must be a number above 0"),
    ("2021-12-01,60,7\n", "line 3: 3 fields where the header has 2"),
    ("2021-12-01\n", "line 3: 1 fields where the header has 2"),
])
def test_a_bad_line_of_a_market_file_refuses_it_with_its_line_and_problem(tmp_path, lines, problem):
    path = write(tmp_path, "floor.csv", "date,floor_eth\n2021-11-30,61\n" + lines)
    with pytest.raises(BadMarketFile) as refused:
        read_market_days(path, None)
    assert str(refused.value) == f"{path}: {problem}"


def test_a_market_file_that_is_not_utf8_is_refused_with_its_line(tmp_path):
    path = tmp_path / "eth.csv"
    path.write_bytes(b"\xef\xbb\xbfdate,eth_usd\n\n2021-12-01,4600\n2021-12-02,4\xe9\n")
    with pytest.raises(BadMarketFile, match="line 4: not UTF-8"):
        read_market_days(None, path)


@pytest.mark.parametrize(("option", "content", "problem"), [
    ("--floor", "date,floor_eth\n2021-12-01,abc\n", "line 2: floor_eth 'abc' is not a number"),
    ("--eth-usd", "date,eth_usd\nnot-a-date,4600\n", "line 2: date 'not-a-date' is not a day"),
    ("--floor", "date,floor_eth\n2021-12-01,-1\n", "line 2: floor_eth -1 must be a number above 0"),
])
def test_replay_refuses_a_bad_market_line_on_one_line_never_a_traceback(tmp_path, option, content, problem):
    path = write(tmp_path, "market.csv", content)
    result = runner.invoke(app, [*WINDOW, option, str(path), "--json"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{path}: {problem}" in lines[0], result.stderr


SALES_HEADER = "event_id,timestamp,punk_id,price_eth,seller,buyer,source\n"


def files_market(tmp_path, *contents: tuple[str, str]):
    from fairvalue.settings import get_settings
    from storage.bundled import market_data_from_files

    paths = [write(tmp_path, name, text) for name, text in contents]
    return market_data_from_files(get_settings().data_dir / "cryptopunks" / "punks.csv", paths, [], [], 0.2)


def test_overlapping_sales_files_count_each_refused_event_once(tmp_path):
    """A later file that repeats the files before it (the bundled sales.csv again, say) counted
    each refused event once per file: filtered_out.non_positive_price 2 -> 4."""
    import pandas as pd

    from fairvalue.evaluation import filtered_out

    first = (SALES_HEADER + "a,2022-01-05T10:00:00Z,7,90,0xaa,0xbb,t\n"
             "c,2022-01-07T10:00:00Z,8,0,0xaa,0xcc,t\n"  # price 0: refused
             "e,2022-01-08T10:00:00Z,9,0,0xaa,0xcc,t\n")  # refused here, a clean sale in the second file
    second = first.replace("e,2022-01-08T10:00:00Z,9,0,", "e,2022-01-08T10:00:00Z,9,95,")
    data = files_market(tmp_path, ("sales.csv", first), ("later.csv", second), ("again.csv", first))
    assert sorted(data.sales["event_id"]) == ["a", "e"]
    window = filtered_out(data, pd.Timestamp("2022-01-01"), pd.Timestamp("2022-02-01"))
    assert window == {"n": 1, "by_reason": {"non_positive_price": 1}}


def test_refused_rows_without_a_time_are_counted_apart_not_dropped(tmp_path):
    """A refused row with no readable time, the wrong number of fields or an unreadable JSON line
    was in no count and no message."""
    import pandas as pd

    from fairvalue.evaluation import describe_filtered, filtered_out

    data = files_market(
        tmp_path,
        ("later.csv", SALES_HEADER + "a,2022-01-05T10:00:00Z,7,90,0xaa,0xbb,t\n"
                                     "b,yesterday,7,90,0xaa,0xbb,t\n"  # no readable time
                                     "c,2022-01-07T10:00:00Z,8,0,0xaa,0xcc,t\n"
                                     "d,2022-01-08T10:00:00Z,9\n"  # 3 fields of 7
                                     "f,9999-12-31T00:00:00Z,9,5,0xaa,0xcc,t\n"),  # past what pandas holds
        ("later.jsonl", '{"event_id": "g", "timestamp": "2022-01-09T10:00:00Z", "punk_id": 9, "price_eth": \n'),
    )
    filtered = filtered_out(data, pd.Timestamp("2022-01-01"), pd.Timestamp("2022-02-01"))
    assert filtered["by_reason"] == {"non_positive_price": 1}
    unplaced = filtered["refused_unplaced"]
    assert sum(unplaced.values()) == 4 and unplaced["malformed_row"] == 2, unplaced
    lines = describe_filtered(filtered).splitlines()
    assert lines[0] == "filtered out: 1 (non_positive_price 1)"
    assert lines[1].startswith("refused without a time any window holds (in no count above): 4 (")
    clean = files_market(tmp_path, ("clean.csv", SALES_HEADER + "a,2022-01-05T10:00:00Z,7,90,0xaa,0xbb,t\n"))
    assert "refused_unplaced" not in filtered_out(clean, pd.Timestamp("2022-01-01"), pd.Timestamp("2022-02-01"))


def test_bundled_replay_lays_the_market_files_over_the_bundled_days(tmp_path):
    """--floor and --eth-usd replaced the bundled history: a floor file of December alone left the
    replay without any earlier floor. A day the file gives wins; the others are the bundled ones."""
    import pandas as pd

    from fairvalue.evaluation import load_market
    from fairvalue.settings import get_settings

    floor = write(tmp_path, "floor.csv", "date,floor_eth\n2021-12-01,123\n2022-01-02,70\n")
    eth_usd = write(tmp_path, "eth.csv", "date,eth_usd\n2022-01-02,3800\n")
    bundled = load_market(get_settings(), "bundled", [], None, None).market.set_index("day")
    market = load_market(get_settings(), "bundled", [], floor, eth_usd).market.set_index("day")
    assert market.index.tolist() == [*bundled.index, pd.Timestamp("2022-01-02")]
    assert market.loc["2021-12-01", "floor"] == 123 and market.loc["2021-12-01", "eth_usd"] == 4587.74
    assert market.loc["2022-01-02"].tolist() == [70, 3800]
    untouched = bundled.index[bundled.index != pd.Timestamp("2021-12-01")]
    pd.testing.assert_frame_equal(market.loc[untouched], bundled.loc[untouched])


@pytest.mark.parametrize("option", ["--sales", "--listings"])
def test_replay_names_the_events_file_it_refuses_whole(tmp_path, option):
    """Of several files, the refusal says which one could not be read (it said only "line 1")."""
    path = write(tmp_path, "later.csv", "when;what\n2021-12-16;x\n")
    result = runner.invoke(app, [*WINDOW, option, str(path), "--json"])
    assert result.exit_code == 2 and result.stdout == "", result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nothing replayed: ") and str(path) in lines[0], result.stderr


def test_a_stored_wash_trade_given_again_in_a_replay_file_stays_out(tmp_path):
    """A file overlapping the stored sales repeats a stored wash trade: merge added it as a clean
    sale (trained on and scored), while filtered_out counted it as left out too."""
    from fairvalue.evaluation import filtered_out, merge
    from models.features import MarketData, excluded_frame

    seller, buyer = "0x" + "a" * 40, "0x" + "c" * 40
    stored = pd.DataFrame({
        "id": [1, 2], "event_id": ["clean-1", "wash-1"],
        "ts": pd.to_datetime(["2021-06-10 10:00", "2021-06-11 10:00"]).astype("datetime64[ns]"),
        "item_key": ["1000", "2000"], "price": [30.0, 31.0], "seller": [seller, buyer], "buyer": [buyer, buyer],
        "wash_reason": [None, "wash_self_trade"]})
    base = MarketData(pd.DataFrame(index=pd.Index(["1000", "2000", "3000"], name="item_key")),
                      stored.loc[[0], ["event_id", "ts", "item_key", "price"]].reset_index(drop=True),
                      pd.DataFrame({"day": pd.to_datetime(["2021-06-09"]), "floor": [25.0], "eth_usd": [2500.0]}),
                      excluded=excluded_frame([("wash-1", "2021-06-11 10:00", "2000", 31.0, "wash_self_trade")]))
    extra_file = tmp_path / "extra.csv"
    extra_file.write_text("event_id,timestamp,punk_id,price_eth,seller,buyer,source\n"
                          f"wash-1,2021-06-11T10:00:00Z,2000,31.0,{buyer},{buyer},punks.market\n"
                          f"new-1,2021-06-12T10:00:00Z,3000,32.0,{seller},0x{'b' * 40},punks.market\n")
    extra = market_data_from_files(BUNDLED / "punks.csv", [extra_file], [BUNDLED / "floor.csv"],
                                   [BUNDLED / "eth_usd.csv"], 0.0, stored_sales=lambda lo, hi: stored)
    merged = merge(base, extra)
    assert list(merged.sales["event_id"]) == ["clean-1", "new-1"]
    left_out = filtered_out(merged, pd.Timestamp("2021-06-01"), pd.Timestamp("2021-07-01"))
    assert left_out["by_reason"] == {"wash_self_trade": 1}
