"""The card universe file: the bundled one is valid, and a bad one names the card and the field."""

from __future__ import annotations

import copy

import pytest
import yaml

from fairvalue.card_universe import CATEGORIES, CardConfigError, parse_universe, read_universe
from fairvalue.settings import get_settings


def bundled() -> dict:
    return yaml.safe_load(get_settings().cards_config.read_text())


def test_bundled_universe_has_forty_valid_cards_in_every_category():
    universe = read_universe(get_settings().cards_config)
    assert universe.collection == "cards" and universe.currency == "USD"
    assert len(universe.cards) == 40
    assert {c.category for c in universe.cards} == set(CATEGORIES)
    assert len({c.external_id for c in universe.cards}) == 40


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("category", "legendary", "category: Input should be 'grail', 'chase', 'meta' or 'personal'"),
    ("priority", 9, "priority: Input should be less than or equal to 5"),
    ("external_id", "tcg-42", "external_id: String should match pattern"),
    ("colour", "red", "colour: Extra inputs are not permitted"),
])
def test_a_bad_field_names_the_card_and_the_field(field, value, expected):
    doc = bundled()
    doc["cards"][2][field] = value
    with pytest.raises(CardConfigError) as err:
        parse_universe(doc)
    card_id = doc["cards"][2]["id"]
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith(f"card {card_id!r} (#3): {expected}")


def test_every_problem_is_listed_and_a_bad_id_is_named_by_position():
    doc = bundled()
    del doc["cards"][0]["name"]
    doc["cards"][5]["id"] = "Not A Slug"
    doc["cards"][7] = copy.deepcopy(doc["cards"][6])  # duplicate id
    with pytest.raises(CardConfigError) as err:
        parse_universe(doc)
    problems = err.value.problems
    assert problems[0] == f"card {doc['cards'][0]['id']!r} (#1): name: Field required"
    assert problems[1].startswith("card 'Not A Slug' (#6): id: String should match pattern")
    assert problems[2] == f"card {doc['cards'][7]['id']!r} (#8): id: duplicate of card #7"
    assert len(problems) == 3


def test_external_ids_as_numbers_are_accepted_and_a_non_mapping_file_is_refused():
    doc = bundled()
    doc["cards"][0]["external_id"] = 42382
    assert parse_universe(doc).cards[0].external_id == "42382"
    with pytest.raises(CardConfigError, match="must be a mapping"):
        parse_universe(["not", "a", "mapping"])


def test_a_file_that_is_not_utf8_is_refused_naming_the_byte(tmp_path):
    """A Latin-1 "Pokémon" raised UnicodeDecodeError through `cards load` as a traceback."""
    path = tmp_path / "cards.yaml"
    path.write_bytes(yaml.safe_dump(bundled(), allow_unicode=True).encode("latin-1", errors="replace"))  # é: 0xe9
    with pytest.raises(CardConfigError) as err:
        read_universe(path)
    assert len(err.value.problems) == 1 and err.value.problems[0].startswith("not UTF-8 text: byte 0xe9 at offset ")


def test_a_first_day_in_the_future_is_refused():
    """It was stored, and every real price after it refused as before_collection until that day."""
    doc = bundled()
    doc["first_day"] = "2999-01-01"
    with pytest.raises(CardConfigError) as err:
        parse_universe(doc)
    assert err.value.problems == ["header: first_day: Value error, 2999-01-01 is in the future: every price "
                                  "until then would be refused"]
    doc["first_day"] = "2020-01-01"
    assert str(parse_universe(doc).first_day) == "2020-01-01"
