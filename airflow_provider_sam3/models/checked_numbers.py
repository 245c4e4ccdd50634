"""Numbers from DAG files, templates and connection extras, checked before they can disable a check.

``float("nan")`` compares false with everything, so a NaN ceiling never trips and a NaN deadline never passes;
``inf`` makes a deadline that cannot be scheduled; ``True`` is an ``int`` to Python. These helpers refuse all of
them, naming the field and what is allowed. Strings that read as finite numbers are accepted (templates render to
strings). Pure Python: the models layer, so the hook and the operators can both use them.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Literal, overload

__all__ = ["finite_number", "whole_number"]


def _refuse(field: str, value: Any, what: str, allowed: str) -> Exception:
    from airflow_provider_sam3.exceptions import InputValidationError

    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return InputValidationError(field, f"{shown} {what}", allowed=allowed)


def _range_text(kind: str, minimum: float | None, maximum: float | None, strict_minimum: bool, allow_none: bool) -> str:
    parts = [kind]
    if minimum is not None:
        parts.append(f"{'above' if strict_minimum else 'at least'} {minimum:g}")
    if maximum is not None:
        parts.append(f"at most {maximum:g}")
    text = parts[0] + (" " + " and ".join(parts[1:]) if len(parts) > 1 else "")
    return text + (", or None" if allow_none else "")


def finite_number(
    field: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    allow_none: bool = False,
    strict_minimum: bool = False,
) -> float | None:
    """``value`` as a finite float within the bounds; ``InputValidationError(field, ...)`` otherwise.

    Refused: NaN, +-inf, booleans, non-numbers, and strings that do not read as a finite number.
    """
    allowed = _range_text("a finite number", minimum, maximum, strict_minimum, allow_none)
    if value is None:
        if allow_none:
            return None
        raise _refuse(field, value, "is missing", allowed)
    if isinstance(value, bool):
        raise _refuse(field, value, "is a boolean, not a number", allowed)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _refuse(field, value, "is not a number", allowed) from None
    elif isinstance(value, Real):
        try:
            number = float(value)
        except (OverflowError, ValueError):
            raise _refuse(field, value, "is too large to be a number of this kind", allowed) from None
    else:
        raise _refuse(field, value, f"is a {type(value).__name__}, not a number", allowed)
    if math.isnan(number):
        raise _refuse(field, value, "is NaN (not a number), which would disable the check it sets", allowed)
    if math.isinf(number):
        raise _refuse(field, value, "is infinite", allowed)
    if minimum is not None and (number <= minimum if strict_minimum else number < minimum):
        raise _refuse(field, value, f"is {'not above' if strict_minimum else 'below'} {minimum:g}", allowed)
    if maximum is not None and number > maximum:
        raise _refuse(field, value, f"is above {maximum:g}", allowed)
    return number


@overload
def whole_number(
    field: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    allow_none: Literal[False] = False,
) -> int: ...
@overload
def whole_number(
    field: str, value: Any, *, minimum: int | None = None, maximum: int | None = None, allow_none: bool
) -> int | None: ...
def whole_number(
    field: str, value: Any, *, minimum: int | None = None, maximum: int | None = None, allow_none: bool = False
) -> int | None:
    """``value`` as an int within the bounds; ``InputValidationError(field, ...)`` otherwise.

    Refused: booleans, fractions (``2.5``), NaN, +-inf and non-numbers; ``3.0`` and ``"3"`` are accepted.
    """
    allowed = _range_text("a whole number", minimum, maximum, False, allow_none)
    if value is None:
        if allow_none:
            return None
        raise _refuse(field, value, "is missing", allowed)
    if isinstance(value, bool):
        raise _refuse(field, value, "is a boolean, not a whole number", allowed)
    if isinstance(value, Integral):
        number = int(value)
    else:
        text = value.strip() if isinstance(value, str) else value
        if isinstance(text, str):
            parsed: int | None
            try:
                parsed = int(text)
            except ValueError:
                parsed = None
            if parsed is None:
                real = finite_number(field, text, allow_none=False)
                if real is None or not real.is_integer():
                    raise _refuse(field, value, "is not a whole number", allowed)
                parsed = int(real)
            number = parsed
        elif isinstance(text, Real):
            real = finite_number(field, text)
            if real is None or not real.is_integer():
                raise _refuse(field, value, "is not a whole number", allowed)
            number = int(real)
        else:
            raise _refuse(field, value, f"is a {type(value).__name__}, not a whole number", allowed)
    if minimum is not None and number < minimum:
        raise _refuse(field, value, f"is below {minimum}", allowed)
    if maximum is not None and number > maximum:
        raise _refuse(field, value, f"is above {maximum}", allowed)
    return number
