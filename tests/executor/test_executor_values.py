"""Plain-data encoding: round trips, Python == semantics after decoding, refusals."""
from __future__ import annotations

import collections
import math

import pytest

from azr_jax.executor import values

Counter, OrderedDict, defaultdict, deque = (collections.Counter, collections.OrderedDict,
                                            collections.defaultdict, collections.deque)

SAMPLES = [
    None, True, False, 0, -7, 2**200, 1.5, -0.0, math.inf, 1e300, 3 + 4j, 1 + 0j, "", "héllo\udcff", b"\x00ab",
    bytearray(b"xy"), [1, [2, (3,)]], (), (1,), {1, 2}, frozenset({"a"}), {frozenset({1}): (1, "a")},
    {"a": [1], "b": {"c": None}}, OrderedDict([("b", 1), ("a", 2)]), Counter("abca"), deque([1, 2], maxlen=5),
    defaultdict(list, {"k": [1]}), defaultdict(None, {}), range(3), range(10, -2, -3), [range(0)],
]


@pytest.mark.parametrize("value", SAMPLES, ids=repr)
def test_round_trip_keeps_value_and_exact_type(value):
    back = values.decode(values.encode(value))
    assert type(back) is type(value)
    assert back == value
    if isinstance(value, deque):
        assert back.maxlen == value.maxlen
    if isinstance(value, defaultdict):
        assert back.default_factory is value.default_factory


PAIRS = [
    (1, 1.0), (1, True), (1.0, True), (0, False), (1, 1 + 0j), (0, -0.0), (2**53 + 1, float(2**53 + 1)),
    (2**100, float(2**100)), ((1, 2), [1, 2]), ({1: "a"}, {1.0: "a"}), ({1, 2}, frozenset({2, 1})),
    (b"ab", bytearray(b"ab")), ("ab", b"ab"), ([1, 2], deque([1, 2])), (deque([1]), deque([1], maxlen=3)),
    (OrderedDict(a=1, b=2), OrderedDict(b=2, a=1)), (OrderedDict(a=1, b=2), {"b": 2, "a": 1}),
    (Counter(a=1, b=0), Counter(a=1)), (Counter(a=1, b=0), {"a": 1}), (Counter(a=1), {"a": 1}),
    (defaultdict(int, {"a": 1}), {"a": 1}), ({"a": [1, 2]}, {"a": [1, 2.0]}), ([None], [None]),
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}), ([[1]], [[1, 2]]), ((1,), (1, 1)), ("a", "a "),
]


@pytest.mark.parametrize("a, b", PAIRS, ids=repr)
def test_decoded_values_compare_like_python(a, b):
    decoded_a, decoded_b = values.decode(values.encode(a)), values.decode(values.encode(b))
    assert (decoded_a == decoded_b) == (a == b)


def test_nan_never_equals_a_nan_from_another_evaluation():
    nan = float("nan")
    assert values.decode(values.encode([nan])) != values.decode(values.encode([nan]))
    assert values.contains_nan(values.encode({"a": (1, complex(0, nan))}))
    assert not values.contains_nan(values.encode(["nan", 1.0, {"f": "nan"}]))


class Sneaky(list):
    pass


class AlwaysEqual:
    def __eq__(self, other):
        return True


@pytest.mark.parametrize("value", [Sneaky([1]), AlwaysEqual(), [AlwaysEqual()], {"k": print}, iter(range(3)), len,
                                   defaultdict(lambda: 0), type("X", (), {})(), {1: object()}],
                         ids=lambda v: type(v).__name__)
def test_anything_but_plain_data_is_refused(value):
    with pytest.raises(values.NotPlainData):
        values.encode(value)


def test_cycles_and_depth_are_refused_and_budgets_hold():
    cyclic = []
    cyclic.append(cyclic)
    with pytest.raises(values.NotPlainData):
        values.encode(cyclic)
    nested = []
    for _ in range(values.MAX_DEPTH + 1):
        nested = [nested]
    with pytest.raises(values.NotPlainData):
        values.encode(nested)
    with pytest.raises(values.TooLarge):
        values.encode(list(range(100)), max_nodes=50)
    with pytest.raises(values.TooLarge):
        values.encode("x" * 1000, max_chars=999)


@pytest.mark.parametrize("data", [None, [], ["?"], ["i"], ["i", 5], ["f", "zz"], ["B", 2], ["l", "x"],
                                  ["S", [["l", []]]], ["d", [[["s", "a"]]]], ["D", "print", []], ["q", [], "3"],
                                  ["c", "0x1p+0"], "s"])
def test_malformed_encodings_are_rejected(data):
    with pytest.raises(values.MalformedEncoding):
        values.decode(data)
