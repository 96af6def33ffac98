"""The checks every boundary shares: a list of strings, a positive integer. Errors name the bad item.

>>> checked_strings(["a", "b"], "query")
['a', 'b']
>>> checked_strings(["a", None], "query")
Traceback (most recent call last):
...
TypeError: query 1 is NoneType (None), not a string
>>> positive_int("batch_size", 0)
Traceback (most recent call last):
...
ValueError: batch_size must be a positive integer, got 0
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def checked_strings(values: object, what: str) -> list[str]:
    """``values`` as a list of strings, or a ``TypeError`` naming the first item that is not one.

    One string is refused too (it is a ``Sequence`` of characters, almost never what the caller meant).
    An empty list is fine: what to do with it is the caller's decision.
    """
    if isinstance(values, str):
        raise TypeError(f"expected a list of {what} strings, got one string; wrap it in a list")
    if not isinstance(values, Sequence):
        raise TypeError(f"expected a list of {what} strings, got {type(values).__name__}")
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(f"{what} {index} is {type(value).__name__} ({value!r:.60}), not a string")
    return list(values)


def checked_string(value: object, what: str) -> str:
    """``value`` if it is a string, else a ``TypeError`` saying what it is."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    return value


def positive_int(name: str, value: object) -> int:
    """``value`` if it is an int >= 1 (``bool`` is refused), else a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def non_negative_number(name: str, value: object, unit: str = "") -> float:
    """``value`` if it is a finite int or float >= 0 (``bool`` is refused), else a ``ValueError`` naming ``name``.

    >>> non_negative_number("max_wait", -1, " of seconds")
    Traceback (most recent call last):
    ...
    ValueError: max_wait must be a number of seconds >= 0, got -1
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a number{unit} >= 0, got {value!r}")
    return value
