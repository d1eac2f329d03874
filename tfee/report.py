"""Reports of a policy's evaluation: a text table, a JSON file and PNG plots.

Plots use matplotlib's object API with the Agg canvas only, so they work on
machines without a display and never change pyplot's global backend.
"""

import json
import math
import os

import numpy as np

from tfee._files import write_atomically
from tfee.policy.evaluation import Evaluation

__all__ = [
    "plot_exit_histogram",
    "plot_exit_shares",
    "save_figure",
    "plot_exits",
    "plot_front",
    "text_table",
    "write_json",
    "write_report",
]


def _check_evaluation(evaluation, api, argument="evaluation"):
    if not isinstance(evaluation, Evaluation):
        raise TypeError(
            f"{api}: `{argument}` must be a tfee Evaluation (from tfee.evaluate). "
            f"Received: {argument}={type(evaluation).__name__}"
        )


def text_table(evaluation):
    """A plain-text report: summary lines, then one row per exit.

    Args:
      evaluation: a `tfee.policy.Evaluation`.

    Returns:
      A string.
    """
    _check_evaluation(evaluation, "tfee.report.text_table")
    return evaluation.table()


def _jsonable(value):
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path, data):
    """Writes `data` (dicts, lists, numbers, objects with `to_dict`) as JSON.

    NaN and infinities become null. The file is written atomically.

    Returns:
      `path`.
    """

    def write(partial):
        with open(partial, "w") as f:
            json.dump(_jsonable(data), f, indent=2)
            f.write("\n")

    return write_atomically(path, write)


def save_figure(figure, path):
    """Writes a matplotlib `Figure` as PNG, atomically; returns `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    return write_atomically(
        path, lambda partial: figure.savefig(partial, format="png", dpi=120)
    )


def plot_front(path, evaluation, front=None, title=None):
    """Accuracy vs MACs: the front, the chosen policy, the oracle, each exit.

    Args:
      path: the .png to write.
      evaluation: the chosen policy's `tfee.policy.Evaluation` (with its oracle).
      front: a `tfee.policy.Front` measured on the same data, or None.
      title: the plot's title.

    Returns:
      `path`.
    """
    from matplotlib.figure import Figure

    api = "tfee.report.plot_front"
    _check_evaluation(evaluation, api)
    e = evaluation
    figure = Figure(figsize=(6.4, 4.6))
    axes = figure.subplots()
    if front is not None and front.points:
        axes.plot(
            [100 * p.macs_fraction for p in front.points],
            [100 * p.accuracy for p in front.points],
            "-",
            color="tab:blue",
            marker=".",
            label=f"front ({front.rule})",
        )
    axes.plot(
        [100 * m / e.full_macs for m in e.exit_macs],
        [100 * a for a in e.single_exit_accuracy],
        "s",
        color="tab:gray",
        label="single exits",
    )
    for k, (m, a) in enumerate(zip(e.exit_macs, e.single_exit_accuracy), start=1):
        axes.annotate(
            str(k),
            (100 * m / e.full_macs, 100 * a),
            fontsize=7,
            xytext=(3, -9),
            textcoords="offset points",
        )
    if e.oracle is not None:
        axes.plot(
            100 * e.oracle.macs_fraction,
            100 * e.oracle.accuracy,
            "^",
            color="tab:green",
            markersize=9,
            label="oracle",
        )
    axes.plot(
        100 * e.macs_fraction,
        100 * e.accuracy,
        "*",
        color="tab:red",
        markersize=13,
        label="chosen policy",
    )
    axes.set_xlabel("mean MACs (% of the full network's MACs)")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(title or "accuracy vs MACs")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_exits(path, names, macs_fractions, accuracies, title=None):
    """Accuracy against MACs, one labelled point per exit.

    Args:
      path: the .png to write.
      names: the exits' names.
      macs_fractions: each exit's MACs as a fraction of the full network's
        MACs (`tfee.cost.ExitCost.fraction_of_full`).
      accuracies: each exit's accuracy in [0, 1], or a dict label -> such a
        list to draw several networks (before and after compression).
      title: the plot's title (say which model, data and split).

    Returns:
      `path`.
    """
    from matplotlib.figure import Figure

    series = accuracies if isinstance(accuracies, dict) else {None: accuracies}
    figure = Figure(figsize=(6.4, 4.6))
    axes = figure.subplots()
    x = [100 * m for m in macs_fractions]
    for label, values in series.items():
        y = [100 * a for a in values]
        axes.plot(x, y, "s-", label=label)
        for name, xi, yi in zip(names, x, y):
            axes.annotate(
                name, (xi, yi), fontsize=7, xytext=(3, -9), textcoords="offset points"
            )
    axes.set_xlabel("MACs to the exit (% of the full network's MACs)")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(title or "accuracy per exit")
    axes.grid(alpha=0.3)
    if len(series) > 1:
        axes.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_exit_shares(path, shares, oracle_shares=None, title=None):
    """Bar chart of the share of samples leaving at each exit.

    Args:
      path: the .png to write.
      shares: per exit, the fraction of samples leaving there.
      oracle_shares: the oracle's fractions, drawn beside them, or None.
      title: the plot's title (say which model, data and split).

    Returns:
      `path`.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.8))
    axes = figure.subplots()
    positions = np.arange(1, len(shares) + 1)
    width = 0.4 if oracle_shares is not None else 0.7
    axes.bar(
        positions - (width / 2 if oracle_shares is not None else 0),
        [100 * f for f in shares],
        width,
        color="tab:red",
        label="policy",
    )
    if oracle_shares is not None:
        axes.bar(
            positions + width / 2,
            [100 * f for f in oracle_shares],
            width,
            color="tab:green",
            label="oracle",
        )
    axes.set_xticks(positions)
    axes.set_xlabel("exit")
    axes.set_ylabel("samples leaving (%)")
    axes.set_title(title or "exit histogram")
    axes.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_exit_histogram(path, evaluation, title=None):
    """`plot_exit_shares` of an evaluation: its policy's and its oracle's.

    Returns:
      `path`.
    """
    _check_evaluation(evaluation, "tfee.report.plot_exit_histogram")
    oracle = evaluation.oracle
    return plot_exit_shares(
        path,
        evaluation.exit_fractions,
        oracle.exit_fractions if oracle is not None else None,
        title=title,
    )


def write_report(directory, evaluation, front=None, extra=None, prefix="", title=None):
    """Writes the table (.txt), JSON and both plots into `directory`.

    Args:
      directory: output folder (created if missing).
      evaluation: the `tfee.policy.Evaluation` to report.
      front: an optional `tfee.policy.Front` for the accuracy-vs-MACs plot.
      extra: optional JSON-ready dict stored under "extra".
      prefix: file-name prefix, e.g. "test_".
      title: the plots' title (say which model, data and split).

    Returns:
      A dict name -> path of the files written ("table", "json", "front",
      "histogram").
    """
    _check_evaluation(evaluation, "tfee.report.write_report")
    paths = {
        "table": os.path.join(directory, f"{prefix}report.txt"),
        "json": os.path.join(directory, f"{prefix}report.json"),
        "front": os.path.join(directory, f"{prefix}accuracy_vs_macs.png"),
        "histogram": os.path.join(directory, f"{prefix}exit_histogram.png"),
    }
    table = text_table(evaluation)

    def write_table(partial):
        with open(partial, "w") as f:
            f.write(table + "\n")

    write_atomically(paths["table"], write_table)
    data = {"evaluation": evaluation}
    if front is not None:
        data["front"] = front
    if extra is not None:
        data["extra"] = extra
    write_json(paths["json"], data)
    plot_front(paths["front"], evaluation, front, title=title)
    plot_exit_histogram(paths["histogram"], evaluation, title=title)
    return paths
