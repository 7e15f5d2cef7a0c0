"""Values against type annotations that carry their valid range: `Annotated[float, Gt(0)]`.

The experiment's settings (config.py) and the keywords of registered components (registry.py)
say what they accept in their annotations: a type (int, float, bool, str, None, a Literal, a
union, list[...], tuple[...], dict[...]) and, for numbers, bounds from annotated_types (Ge, Gt,
Le, Lt, Interval, MultipleOf) with `doc(...)` saying why they are the limits. `mismatch` says
what was expected when a value does not fit. An int is never a bool, a float may be an int, and
a float is finite: NaN and infinity are outside every range. A tuple may arrive as a list (JSON).
"""
import math
import types
import typing
from typing import Annotated, Literal

from annotated_types import DocInfo, Ge, GroupedMetadata, Gt, Le, Lt, MultipleOf

NUMBERS = (int, float)


class Mismatch(typing.NamedTuple):
    """Why a value does not fit: what was expected, the wrong type it has (if so), the named choices."""

    expected: str  # "int >= 1", "float in [0, 1) (why)", "one of 'a', 'b'"
    got: str = ""  # the value's type when that is what is wrong
    choices: tuple = ()  # a Literal's values, for a closest-match hint

    def __str__(self):
        return f"expected {self.expected}" + (f", got {self.got}" if self.got and not self.choices else "")


def mismatch(value, annotation):
    """None when `value` fits `annotation` (type and range), else a Mismatch."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is typing.Any:
        return None
    if origin is Annotated:
        wrong = mismatch(value, args[0])
        return wrong if wrong and wrong.got else _outside(value, args[0], args[1:]) or wrong
    if origin in (typing.Union, types.UnionType):
        return _union(value, args)
    if origin is Literal:
        chosen = any(value == c and type(value) is type(c) for c in args)
        return None if chosen else Mismatch(describe(annotation), type(value).__name__, args)
    if origin in (list, tuple, dict):
        return _container(value, annotation, origin, args)
    if not _is_instance(value, annotation):
        return Mismatch(describe(annotation), type(value).__name__)
    if annotation is float and not math.isfinite(value):
        return Mismatch("finite float")
    return None


def _is_instance(value, kind):
    if kind is type(None):
        return value is None
    if kind is float:
        return isinstance(value, NUMBERS) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is tuple:
        return isinstance(value, (tuple, list))
    return isinstance(value, kind)


def _union(value, options):
    found = [mismatch(value, option) for option in options]
    if None in found:
        return None
    out_of_range = [m for m in found if not m.got]
    if out_of_range:
        return out_of_range[0]
    choices = tuple(c for option in options if typing.get_origin(option) is Literal for c in typing.get_args(option))
    return Mismatch(describe(typing.Union[options]), type(value).__name__, choices)


def _container(value, annotation, origin, args):
    if not _is_instance(value, origin):
        return Mismatch(describe(annotation), type(value).__name__)
    if origin is dict:
        items = list(zip([args[1]] * len(value), value.values())) if args else []
    elif origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            return Mismatch(describe(annotation), f"{len(value)} items")
        items = list(zip(args, value))
    else:
        items = [(args[0], item) for item in value] if args else []
    for item_annotation, item in items:
        if mismatch(item, item_annotation):
            return Mismatch(describe(annotation), f"item {item!r}")
    return None


def _outside(value, kind, metadata):
    """A Mismatch when `value` breaks a bound of `metadata`, else None."""
    bounds = constraints(metadata)
    tests = {Ge: lambda b: value >= b.ge, Gt: lambda b: value > b.gt, Le: lambda b: value <= b.le,
             Lt: lambda b: value < b.lt, MultipleOf: lambda b: value % b.multiple_of == 0}
    finite = not isinstance(value, float) or math.isfinite(value)
    if finite and all(tests[type(bound)](bound) for bound in bounds):
        return None
    return Mismatch(f"{'' if finite else 'finite '}{describe(kind)} {describe_bounds(bounds)}{reason(metadata)}")


def constraints(metadata):
    """The bounds (Ge, Gt, Le, Lt, MultipleOf) among an Annotated's metadata, Intervals unpacked."""
    flat = [item for entry in metadata for item in (entry if isinstance(entry, GroupedMetadata) else [entry])]
    return [item for item in flat if isinstance(item, (Ge, Gt, Le, Lt, MultipleOf))]


def reason(metadata):
    """' (why)' from a doc(...) among the metadata, or ''."""
    docs = [entry.documentation for entry in metadata if isinstance(entry, DocInfo)]
    return f" ({docs[0]})" if docs else ""


def describe_bounds(bounds):
    """'>= 1', '> 0', 'in [0, 1)', '>= 20, a multiple of 20' …"""
    low = next(((b.ge, "[") for b in bounds if isinstance(b, Ge)), None) or next(
        ((b.gt, "(") for b in bounds if isinstance(b, Gt)), None)
    high = next(((b.le, "]") for b in bounds if isinstance(b, Le)), None) or next(
        ((b.lt, ")") for b in bounds if isinstance(b, Lt)), None)
    if low and high:
        text = f"in {low[1]}{_number(low[0])}, {_number(high[0])}{high[1]}"
    elif low or high:
        (limit, bracket), below = (low, False) if low else (high, True)
        text = ("<" if below else ">") + ("=" if bracket in "[]" else "") + f" {_number(limit)}"
    else:
        text = ""
    multiples = [f"a multiple of {_number(b.multiple_of)}" for b in bounds if isinstance(b, MultipleOf)]
    return ", ".join(filter(None, [text, *multiples]))


def _number(x):
    return str(x) if isinstance(x, int) else f"{x:g}"


def describe(annotation):
    """The annotation's type in words: 'int', 'one of bool, 'auto'', 'list of float', '(float, float)'."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return f"{describe(args[0])} {describe_bounds(constraints(args[1:]))}".strip()
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (typing.Union, types.UnionType):
        if any(typing.get_origin(a) is Literal for a in args):
            return "one of " + ", ".join(describe(a).removeprefix("one of ") for a in args)
        return " or ".join(describe(a) for a in args)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return "(" + ", ".join(describe(a) for a in args) + ")"
    if origin in (list, tuple):
        return f"{origin.__name__} of {describe(args[0])}" if args else origin.__name__
    if origin is dict:
        return f"dict of {describe(args[0])} to {describe(args[1])}"
    return "None" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))

