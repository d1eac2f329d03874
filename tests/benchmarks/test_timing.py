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


def test_blocks_run_each_function_over_a_block_in_a_row_rotating_the_first():
    calls = []
    functions = {name: (lambda item, n=name: calls.append((n, item))) for name in "ab"}
    times = timing.time_alternately(functions, [0, 1, 2, 3, 4], block=2)
    assert calls == [
        ("a", 0), ("a", 1), ("b", 0), ("b", 1),
        ("b", 2), ("b", 3), ("a", 2), ("a", 3),
        ("a", 4), ("b", 4),
    ]  # fmt: skip
    assert {name: len(seconds) for name, seconds in times.items()} == {"a": 5, "b": 5}
