"""Argument checks shared by the public kernel wrappers.

Every check raises ValueError whose message names the argument, shows the offending value (or
the first offending entry of an array) and states the constraint. None of them converts a value
of the wrong kind on the quiet: ``int(2.7)`` truncates, ``float(True)`` is 1.0, and
``float("0.1")`` parses a string, so the checks test the type before converting.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

__all__ = [
    "cast_finite",
    "check_bool",
    "check_choice",
    "check_finite",
    "check_float_array",
    "check_integer",
    "check_real",
]


def check_integer(name: str, value) -> int:
    """Check that ``value`` is an integer and return it as an ``int``.

    Parameters
    ----------
    name : str
        Argument name, used in the error message.
    value : object
        The argument.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        Unless ``value`` is a Python or NumPy integer. Floats are refused even when integral
        (``int(2.7)`` would silently truncate to 2), and so are bools (``True`` is not a count
        of 1).
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(
            f"{name} is {value!r} of type {type(value).__name__}; "
            "it must be an integer (int or NumPy integer, not bool or float)"
        )
    return int(value)


def _describe_real_bounds(positive: bool, minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        bounds = f" in [{minimum}, {maximum}]"
    elif minimum is not None:
        bounds = f" >= {minimum}"
    elif maximum is not None:
        bounds = f" <= {maximum}"
    else:
        bounds = ""
    return ("a positive finite real number" if positive else "a finite real number") + bounds


def check_real(
    name: str,
    value,
    *,
    positive: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    """Check that ``value`` is a finite real number within bounds and return it as a ``float``.

    Parameters
    ----------
    name : str
        Argument name, used in the error message.
    value : object
        The argument: a Python ``int``, ``float`` (or other ``numbers.Real``) or a NumPy integer
        or floating-point scalar.
    positive : bool, optional
        Require ``value > 0``.
    minimum, maximum : float, optional
        Inclusive bounds.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        When ``value`` is a bool (``True`` is not the number 1 here), a string or bytes
        (``float("0.1")`` would parse it), any other non-real object, NaN, infinite, too large
        for a float, or out of bounds.
    """
    constraint = _describe_real_bounds(positive, minimum, maximum)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{name} is {value!r} of type {type(value).__name__}; it must be {constraint} "
            "(int, float or NumPy real; not bool or str)"
        )
    try:
        number = float(value)
    except (OverflowError, TypeError, ValueError):
        number = math.inf  # e.g. 10**400: reported as not finite, below
    if (
        not math.isfinite(number)
        or (positive and not number > 0)
        or (minimum is not None and number < minimum)
        or (maximum is not None and number > maximum)
    ):
        raise ValueError(f"{name} is {value}; it must be {constraint}")
    return number


def check_bool(name: str, value) -> bool:
    """Check that ``value`` is a bool (Python or NumPy) and return it as a ``bool``.

    Parameters
    ----------
    name : str
        Argument name, used in the error message.
    value : object
        The argument.

    Returns
    -------
    bool

    Raises
    ------
    ValueError
        Unless ``value`` is ``True``, ``False`` or a ``numpy.bool_``: ``1`` or ``"false"`` are
        refused (``bool("false")`` is True).
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(
            f"{name} is {value!r} of type {type(value).__name__}; it must be True or False"
        )
    return bool(value)


def check_choice(name: str, value, choices: Mapping[str, object]) -> str:
    """Check that ``value`` is one of the string keys of ``choices`` and return it.

    Parameters
    ----------
    name : str
        Argument name, used in the error message.
    value : object
        The argument.
    choices : Mapping[str, object]
        Allowed names (e.g. name to kernel code).

    Returns
    -------
    str

    Raises
    ------
    ValueError
        Unless ``value`` is a string among the keys of ``choices``. The type is tested first, so
        an unhashable value (a list) is a ValueError too, not the TypeError of ``in``.
    """
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} is {value!r}; it must be one of {sorted(choices)}")
    return value


def _first_position(bad: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(bad)[0])


def _entry(name: str, where: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(str(i) for i in where)}]"


def check_finite(name: str, array: np.ndarray) -> None:
    """Check that every entry of a numeric ``array`` is finite.

    Parameters
    ----------
    name : str
        Argument name, used in the error message.
    array : ndarray
        A numeric array (integers pass trivially).

    Raises
    ------
    ValueError
        Naming the first NaN or infinite entry, e.g. ``bias[3] is nan``.
    """
    finite = np.isfinite(array)
    if not finite.all():
        where = _first_position(~finite)
        raise ValueError(f"{name} must be finite; {_entry(name, where)} is {array[where]}")


def cast_finite(name: str, array: np.ndarray, dtype, dtype_of: str) -> np.ndarray:
    """``array`` as a C-contiguous array of ``dtype``, checking that no entry overflowed.

    Parameters
    ----------
    name : str
        Argument name, used in the error message.
    array : ndarray
        A finite array (see :func:`check_finite`).
    dtype : dtype-like
        The dtype the kernel computes in.
    dtype_of : str
        Where that dtype comes from, for the message (e.g. ``"the logits' dtype"``).

    Returns
    -------
    ndarray
        The cast array (``array`` itself when nothing needed to change).

    Raises
    ------
    ValueError
        Naming the first entry that is finite in ``array`` but too large for ``dtype`` (a
        float64 ``1e39`` becomes ``inf`` in float32).
    """
    with np.errstate(over="ignore"):  # reported below, naming the entry
        cast = np.ascontiguousarray(array, dtype=dtype)
    finite = np.isfinite(cast)
    if not finite.all():
        where = _first_position(~finite)
        raise ValueError(
            f"{_entry(name, where)} is {array[where]}; it must fit in {np.dtype(dtype).name}, "
            f"{dtype_of} (it would overflow to {cast[where]})"
        )
    return cast


def check_float_array(name: str, array: np.ndarray, dtype, dtype_of: str) -> np.ndarray:
    """A floating-point, finite ``array`` cast to ``dtype`` without overflow (C-contiguous).

    :func:`check_finite` then :func:`cast_finite`, after checking that ``array`` holds floats
    at all (an integer bias is refused rather than silently converted).

    Raises
    ------
    ValueError
        Naming the argument and, for a non-finite or overflowing value, the first such entry.
    """
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} has dtype {array.dtype}; it must be a floating-point vector")
    check_finite(name, array)
    return cast_finite(name, array, dtype, dtype_of)
