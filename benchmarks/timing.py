"""Timing helpers shared by the benchmarks: alternate what is compared, report medians.

Timing two things one after the other lets a drift in machine load (other
jobs, CPU frequency) favour one of them; these helpers rotate the order on
every input so that any drift hits all of them alike.
"""

import statistics
import time

__all__ = ["median_seconds", "medians", "time_alternately"]


def time_alternately(functions, inputs, warmup=0, block=1):
    """Seconds of every `functions[name](item)` on each item, rotating the order.

    Args:
      functions: {name: callable taking one item}.
      inputs: the items (a batch, an index...); each function runs once on
        each, the first function changing from block to block.
      warmup: the first `warmup` items run untimed first (graph tracing,
        allocations, caches).
      block: items each function runs in a row before the next one takes
        over. 1 alternates item by item; more keeps a model's weights in the
        caches as on a device that runs one model frame after frame (many
        interleaved models would evict each other's weights on every call).

    Returns:
      {name: [seconds per item]}, in the order of `inputs`.
    """
    names = list(functions)
    inputs = list(inputs)
    for item in inputs[:warmup]:
        for name in names:
            functions[name](item)
    times = {name: [] for name in names}
    for b, start in enumerate(range(0, len(inputs), block)):
        shift = b % len(names)
        for name in names[shift:] + names[:shift]:
            function, spent = functions[name], times[name]
            for item in inputs[start : start + block]:
                started = time.perf_counter()
                function(item)
                spent.append(time.perf_counter() - started)
    return times


def medians(times):
    """{name: median seconds} of `time_alternately`'s result."""
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def median_seconds(function, repeats=3):
    """Median wall time of `function()` over `repeats` calls."""
    return medians(time_alternately({"f": lambda _: function()}, range(repeats)))["f"]
