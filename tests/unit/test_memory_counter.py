"""The in-process rate-limit counter (embedded mode, and the API's fallback while Redis is away)."""

from api.limits import MemoryCounter


def test_a_client_is_counted_per_window():
    counter = MemoryCounter()
    assert [counter.hit("a", 1) for _ in range(3)] == [1, 2, 3]
    assert counter.hit("b", 1) == 1 and counter.hit("a", 2) == 1


def test_past_windows_go_when_a_new_one_begins():
    """They went only past 10,000 keys, and then on every hit: a minute of 50,000 clients made each
    request copy the whole count (5 ms a hit), and fewer kept the past minutes for ever."""
    counter = MemoryCounter()
    for client in range(500):
        counter.hit(str(client), 7)
    counter.hit("late", 8)
    assert counter._counts == {("late", 8): 1}
    assert counter.hit("0", 7) == 1  # a request stamped with the minute before: counted, not refused
