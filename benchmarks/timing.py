"""Timing helpers shared by the benchmarks: alternate what is compared, report medians.

Timing two things one after the other lets a drift in machine load (other
jobs, CPU frequency) favour one of them; these helpers rotate the order on
every input so that any drift hits all of them alike.
"""

import statistics
import time

__all__ = ["median_seconds", "medians", "time_alternately"]


def time_alternately(functions, inputs, warmup=0):
    """Seconds of every `functions[name](item)` on each item, rotating the order.

    Args:
      functions: {name: callable taking one item}.
      inputs: the items (a batch, an index...); each function runs once on
        each, the first function changing from item to item.
      warmup: the first `warmup` items run untimed first (graph tracing,
        allocations, caches).

    Returns:
      {name: [seconds per item]}, in the order of `inputs`.
    """
    names = list(functions)
    inputs = list(inputs)
    for item in inputs[:warmup]:
        for name in names:
            functions[name](item)
    times = {name: [] for name in names}
    for i, item in enumerate(inputs):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            functions[name](item)
            times[name].append(time.perf_counter() - started)
    return times


def medians(times):
    """{name: median seconds} of `time_alternately`'s result."""
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def median_seconds(function, repeats=3):
    """Median wall time of `function()` over `repeats` calls."""
    return medians(time_alternately({"f": lambda _: function()}, range(repeats)))["f"]
