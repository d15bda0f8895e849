"""Plain-data values as JSON-safe encodings: the only form in which a value leaves a sandbox.

`encode` runs inside the sandboxed child after model-written code has run there, so it
dispatches on *exact* types, compared with type references captured when this module was
imported (in the template process, before any untrusted code), and reads containers only
through the C-level methods of those types. No method of the value itself is ever called:
an object whose `__eq__` always returns True, or whose `__repr__` lies, is simply "not plain
data", and so is an instance of any other type, subclasses of the supported types included.

`decode` rebuilds real objects of the same exact types from an encoding. The calling process
compares decoded values with Python's own `==`, which for these types is exactly the
semantics AZR wants (1 == 1.0 == True, dicts and sets by content, OrderedDict by order,
Counter treating missing keys as 0, NaN never equal to a NaN from another evaluation).

Encoding: a list whose first item is a tag.
    ["N"] None          ["B", 0|1] bool       ["i", hex] int        ["f", float.hex] float
    ["c", hex, hex] complex                   ["s", str] str
    ["y", hex] bytes    ["Y", hex] bytearray
    ["l", items] list   ["t", items] tuple    ["S", items] set      ["F", items] frozenset
    ["q", items, maxlen|None] deque
    ["d", pairs] dict   ["o", pairs] OrderedDict   ["C", pairs] Counter
    ["D", factory|None, pairs] defaultdict (factory: name of a builtin type)
    ["r", hex, hex, hex] range (start, stop, step)
"""
from __future__ import annotations

import collections
from typing import Any

# Captured now, before untrusted code can rebind builtins or patch the collections module.
_type = type
_len = len
_list = list
_hex = hex
_int = int
_float_hex = float.hex
_float_fromhex = float.fromhex
_bytes_hex = bytes.hex
_bytes_fromhex = bytes.fromhex
_bytearray_hex = bytearray.hex
_dict_items = dict.items
_isinstance = isinstance
_type_name = type.__dict__["__name__"].__get__   # tp_name, immune to metaclass tricks
_range_start, _range_stop, _range_step = range.start.__get__, range.stop.__get__, range.step.__get__
_complex_real = complex.real.__get__
_complex_imag = complex.imag.__get__
_deque_maxlen = collections.deque.maxlen.__get__
_default_factory = collections.defaultdict.default_factory.__get__
_Counter = collections.Counter
_OrderedDict = collections.OrderedDict
_odict_items = collections.OrderedDict.items
_defaultdict = collections.defaultdict
_deque = collections.deque

# defaultdict factories that can be named and rebuilt without running anything.
_FACTORIES = {"list": list, "dict": dict, "set": set, "int": int, "float": float, "str": str,
              "tuple": tuple, "frozenset": frozenset, "bool": bool, "bytes": bytes}
_FACTORY_NAMES = {id(factory): name for name, factory in _FACTORIES.items()}

MAX_DEPTH = 100
# The budget of an answer, an argument list or a gold output, wherever it is encoded (a child, or
# the caller reading a literal); a program's own output is bounded by max_output_chars instead.
VALUE_NODES, VALUE_CHARS = 100_000, 1_000_000


class NotPlainData(ValueError):
    """The value (or something inside it) is not one of the supported plain-data types."""


class TooLarge(ValueError):
    """The value has more nodes or characters than the budget allows."""


class MalformedEncoding(ValueError):
    """`decode` was given something that is not a well-formed encoding."""


class _Encoder:
    """One encoding pass with a budget on nodes, string characters and nesting depth."""

    def __init__(self, max_nodes: int, max_chars: int) -> None:
        self.nodes_left = max_nodes
        self.chars_left = max_chars

    def _spend(self, chars: int) -> None:
        self.nodes_left -= 1
        self.chars_left -= chars
        if self.nodes_left < 0 or self.chars_left < 0:
            raise TooLarge("value is too large")

    def encode(self, value: Any, depth: int) -> list:
        if depth > MAX_DEPTH:
            raise NotPlainData(f"value is nested deeper than {MAX_DEPTH} levels (or contains itself)")
        t = _type(value)
        if value is None:
            self._spend(0)
            return ["N"]
        if t is bool:
            self._spend(1)
            return ["B", 1 if value else 0]
        if t is int:
            text = _hex(value)
            self._spend(_len(text))
            return ["i", text]
        if t is float:
            self._spend(24)
            return ["f", _float_hex(value)]
        if t is complex:
            self._spend(48)
            return ["c", _float_hex(_complex_real(value)), _float_hex(_complex_imag(value))]
        if t is str:
            self._spend(_len(value))
            return ["s", value]
        if t is bytes:
            self._spend(2 * _len(value))
            return ["y", _bytes_hex(value)]
        if t is bytearray:
            self._spend(2 * _len(value))
            return ["Y", _bytearray_hex(value)]
        if t is range:
            bounds = [_hex(_range_start(value)), _hex(_range_stop(value)), _hex(_range_step(value))]
            self._spend(sum(_len(b) for b in bounds))
            return ["r", *bounds]
        tag = _SEQUENCE_TAGS.get(t)
        if tag is not None:
            self._spend(0)
            items = [self.encode(item, depth + 1) for item in _list(value)]
            if t is _deque:
                maxlen = _deque_maxlen(value)
                return ["q", items, maxlen]
            return [tag, items]
        if t is dict or t is _Counter:
            self._spend(0)
            return ["d" if t is dict else "C", self._pairs(_dict_items(value), depth)]
        if t is _OrderedDict:
            self._spend(0)
            return ["o", self._pairs(_odict_items(value), depth)]
        if t is _defaultdict:
            self._spend(0)
            factory = _default_factory(value)
            if factory is None:
                name = None
            else:
                name = _FACTORY_NAMES.get(id(factory))
                if name is None or _FACTORIES[name] is not factory:
                    raise NotPlainData("defaultdict whose default_factory is not a builtin type")
            return ["D", name, self._pairs(_dict_items(value), depth)]
        raise NotPlainData(f"value of type {_type_name(t)!r} is not plain data")

    def _pairs(self, items: Any, depth: int) -> list:
        return [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in _list(items)]


_SEQUENCE_TAGS = {list: "l", tuple: "t", set: "S", frozenset: "F", _deque: "q"}


def encode(value: Any, *, max_nodes: int = 100_000, max_chars: int = 1_000_000) -> list:
    """Encode a plain-data value; raises NotPlainData or TooLarge."""
    return _Encoder(max_nodes, max_chars).encode(value, 0)


def decode(data: Any) -> Any:
    """Rebuild the value of an encoding; raises MalformedEncoding on anything unexpected."""
    try:
        return _decode(data)
    except MalformedEncoding:
        raise
    except (TypeError, ValueError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        raise MalformedEncoding(f"malformed value encoding: {exc}") from None


def _decode(data: Any) -> Any:
    if _type(data) is not list or not data or _type(data[0]) is not str:
        raise MalformedEncoding("malformed value encoding")
    tag, args = data[0], data[1:]
    if tag == "N" and not args:
        return None
    if tag == "B" and args in ([0], [1]):
        return args == [1]
    if tag == "i":
        return _int(_text(args), 16)
    if tag == "f":
        return _float_fromhex(_text(args))
    if tag == "c" and _len(args) == 2:
        return complex(_float_fromhex(_text(args[:1])), _float_fromhex(_text(args[1:])))
    if tag == "s":
        return _text(args)
    if tag == "y":
        return _bytes_fromhex(_text(args))
    if tag == "Y":
        return bytearray(_bytes_fromhex(_text(args)))
    if tag == "r" and _len(args) == 3:
        return range(*(_int(_text([bound]), 16) for bound in args))
    if tag in _SEQUENCE_BUILDERS and _len(args) == 1:
        return _SEQUENCE_BUILDERS[tag](_decode(item) for item in _items(args[0]))
    if tag == "q" and _len(args) == 2 and (args[1] is None or _type(args[1]) is int):
        return _deque((_decode(item) for item in _items(args[0])), args[1])
    if tag in _MAPPING_BUILDERS and _len(args) == 1:
        return _MAPPING_BUILDERS[tag](_decode_pairs(args[0]))
    if tag == "D" and _len(args) == 2 and (args[0] is None or args[0] in _FACTORIES):
        factory = None if args[0] is None else _FACTORIES[args[0]]
        return _defaultdict(factory, _decode_pairs(args[1]))
    raise MalformedEncoding(f"malformed value encoding (tag {tag!r})")


_SEQUENCE_BUILDERS = {"l": list, "t": tuple, "S": set, "F": frozenset}
def _counter(pairs: list) -> collections.Counter:
    return _Counter(dict(pairs))   # Counter(pairs) would count the pairs themselves


_MAPPING_BUILDERS = {"d": dict, "o": _OrderedDict, "C": _counter}


def _text(args: list) -> str:
    if _len(args) != 1 or _type(args[0]) is not str:
        raise MalformedEncoding("malformed value encoding")
    return args[0]


def _items(items: Any) -> list:
    if _type(items) is not list:
        raise MalformedEncoding("malformed value encoding")
    return items


def _decode_pairs(pairs: Any) -> list:
    result = []
    for pair in _items(pairs):
        if _type(pair) is not list or _len(pair) != 2:
            raise MalformedEncoding("malformed value encoding")
        result.append((_decode(pair[0]), _decode(pair[1])))
    return result


def contains_nan(data: Any) -> bool:
    """True when an encoding holds a float NaN anywhere (NaN equals nothing, so an output
    containing one can never be matched by an answer)."""
    if _type(data) is not list or not data:
        return False
    if data[0] == "f" or data[0] == "c":
        return "nan" in data[1:]
    return any(contains_nan(item) for item in data)


def describe_type(value: Any) -> str:
    """The real type name of a value, without running any of its code."""
    return _type_name(_type(value))
