"""`fairvalue decisions`' numbers column: what each kind of decision turned on, in one line."""

from fairvalue.cli.training import decision_numbers


def test_a_gates_decision_shows_both_mapes_and_their_sales():
    numbers = {"contender": {"mape": 0.2512, "n": 412}, "champion": {"mape": 0.1801, "n": 412}, "checks": []}
    assert decision_numbers(numbers) == "0.251 / 0.180 (412)"


def test_a_first_model_has_no_champion():
    assert decision_numbers({"contender": {"mape": 0.2, "n": 9}, "champion": None}) == "0.200 / - (9)"


def test_a_monitor_rollback_shows_the_live_mapes():
    numbers = {"n": 57, "champion_mape": 0.31, "previous_mape": 0.22, "champion": {}, "previous": {}}
    assert decision_numbers(numbers) == "0.310 / 0.220 (57)"


def test_an_operators_decision_has_no_numbers():
    assert decision_numbers({"operator": "cli:ops"}) == "-"
    assert decision_numbers({}) == "-" and decision_numbers(None) == "-"
    assert decision_numbers({"contender": {"mape": float("nan")}, "champion": None}) == "-"
