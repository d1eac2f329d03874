"""benchmarks.timing rotates the order of what it compares and reports medians."""

from benchmarks import timing


def test_time_alternately_rotates_which_function_runs_first():
    calls = []
    functions = {name: (lambda item, n=name: calls.append((n, item))) for name in "abc"}
    times = timing.time_alternately(functions, [0, 1, 2], warmup=1)
    assert calls[:3] == [("a", 0), ("b", 0), ("c", 0)]  # the untimed warm-up
    firsts = [calls[3 + 3 * i][0] for i in range(3)]
    assert firsts == ["a", "b", "c"]
    assert {name: len(seconds) for name, seconds in times.items()} == dict.fromkeys(
        "abc", 3
    )


def test_medians_take_the_middle_time_of_each_function():
    assert timing.medians({"a": [3.0, 1.0, 2.0], "b": [5.0]}) == {"a": 2.0, "b": 5.0}


def test_median_seconds_calls_the_function_once_per_repeat():
    calls = []
    seconds = timing.median_seconds(lambda: calls.append(1), repeats=5)
    assert len(calls) == 5 and seconds >= 0.0
