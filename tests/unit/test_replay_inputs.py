"""The extra files a replay reads (`fairvalue replay --floor/--eth-usd/--sales`): a file that
cannot be read as what it claims is refused whole, with its path and why, never read as nothing."""

from __future__ import annotations

from datetime import date

import pytest
from typer.testing import CliRunner

from fairvalue.cli import app
from storage.bundled import BadMarketFile, read_market_days

runner = CliRunner()
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
