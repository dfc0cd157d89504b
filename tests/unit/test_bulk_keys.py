"""The ids of a bulk read (fairvalue.item_reads.bulk_keys): the usual list is checked by one
regular expression, anything else key by key; both give the same ids or the same 400."""

import pytest

from fairvalue.answers import MAX_BULK_IDS
from fairvalue.errors import BadInput
from fairvalue.item_reads import bulk_keys


@pytest.mark.parametrize(("raw", "expected"), [
    ("1,2,2,3", ["1", "2", "3"]),  # one match checks them all; repeats dropped, order kept
    ("x-1.a:b_c", ["x-1.a:b_c"]),
    (" 1 , 2,,3 ,", ["1", "2", "3"]),  # spaces and empty ids: key by key, same answer
    ("3,1, 3", ["3", "1"]),
    ("1,2\n", ["1", "2"]),  # a trailing newline is whitespace too, never part of an id
])
def test_bulk_ids_are_stripped_checked_and_without_repeats(raw, expected):
    assert bulk_keys(raw.split(",")) == expected


@pytest.mark.parametrize("raw", ["1,bad key", "a" * 65, ",,", "1,\u00e9"])
def test_a_malformed_or_empty_id_list_is_refused_with_why(raw):
    with pytest.raises(BadInput, match="malformed item id|holds no item id"):
        bulk_keys(raw.split(","))


def test_at_most_max_bulk_ids():
    assert len(bulk_keys([str(i) for i in range(MAX_BULK_IDS)])) == MAX_BULK_IDS
    with pytest.raises(BadInput, match=f"at most {MAX_BULK_IDS} ids"):
        bulk_keys([str(i) for i in range(MAX_BULK_IDS + 1)])
