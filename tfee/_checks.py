"""Argument checks shared by tfee's public functions, with errors that name
the API, the argument, what is accepted and what was received."""

import numbers

__all__ = ["check_int"]


def check_int(value, argument, api, minimum=1):
    """Returns `value` as an int; raises unless it is an int >= `minimum`.

    Booleans are refused although Python counts them as ints.

    Raises:
      ValueError: naming `api` and `argument`, what is accepted and received.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < minimum
    ):
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(
            f"{api}: `{argument}` must be {expected}. Received: {argument}={value!r}"
        )
    return int(value)
