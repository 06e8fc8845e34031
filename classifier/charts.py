"""Charts for the staff statistics page, rendered as SVG markup to embed in the HTML.

Pure functions of plain data: selectors gather the numbers, the view passes them here, and the
template embeds the returned markup. Figures are built on ``matplotlib.figure.Figure`` directly,
never through pyplot, whose global figure registry is not safe to share between request threads.
"""

from __future__ import annotations

import datetime
import html
import io
import math
import re
import threading
from collections.abc import Callable

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ml.artifacts import NUM_CLASSES

BAR_COLOUR = "#0d6efd"  # Bootstrap's primary, so the charts match the rest of the site
MUTED_COLOUR = "#6c757d"  # Bootstrap's secondary
TEXT_COLOUR = "#212529"  # Bootstrap's body text
FIGURE_SIZE = (6.4, 3.2)  # inches; the SVG scales to its container, so this sets the aspect and text size
MAX_DATE_TICKS = 10
MIN_DAYS_SHOWN = 7
NO_DATA = "No data yet"
STYLE = {
    "font.size": 9,
    # Bootstrap's font stack, so the charts read like the page; matplotlib measures text with the
    # first one installed on the server, and a short list keeps every <text> element short.
    "font.sans-serif": ["Segoe UI", "Roboto", "Helvetica Neue", "Arial", "DejaVu Sans"],
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "none",  # real <text> elements: far smaller than glyph outlines, and searchable
}
# Without these matplotlib writes an RDF <metadata> block with a creation date into every chart.
NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}

# matplotlib names its groups figure_1, axes_1, patch_3, ... afresh in every file, so two charts on
# one page would repeat them. Its referenced ids (clip paths, tick markers) carry a random hash.
_COUNTER_ID = re.compile(r' id="[A-Za-z][\w.]*_\d+"')
_FIXED_SIZE = re.compile(r' (?:width|height)="[^"]*"')
_STYLE_ELEMENT = re.compile(r"<style[^>]*>.*?</style>", re.DOTALL)
# rc_context swaps process-wide rcParams: two threads rendering at once could each restore the
# defaults under the other's figure. One chart at a time costs a few tens of milliseconds.
_render_lock = threading.Lock()


def uploads_per_day(days: list[datetime.date], counts: list[int]) -> str:
    title = "Uploads per day"
    if len(days) != len(counts):
        raise ValueError(f"{len(days)} days but {len(counts)} counts")
    if not any(counts):
        return _no_data(title)
    busiest = max(zip(counts, days, strict=True))

    def draw(ax: Axes) -> None:
        ax.bar(days, counts, width=0.8, color=BAR_COLOUR)
        # A short range would make the locator fall back to hourly ticks, so show at least a week.
        first, last = date2num(min(days)), date2num(max(days))
        margin = max(0.6, (MIN_DAYS_SHOWN - (last - first)) / 2)
        ax.set_xlim(first - margin, last + margin)
        locator = AutoDateLocator(maxticks=MAX_DATE_TICKS)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("Uploads")

    label = (
        f"Bar chart of uploads per day: {sum(counts)} uploads from {min(days).isoformat()} to "
        f"{max(days).isoformat()}, at most {busiest[0]} on {busiest[1].isoformat()}"
    )
    return _render(title, label, draw)


def predictions_per_digit(counts: list[int]) -> str:
    title = "Predictions per digit"
    if counts and len(counts) != NUM_CLASSES:
        raise ValueError(f"expected {NUM_CLASSES} counts, one per digit, got {len(counts)}")
    if not any(counts):
        return _no_data(title)

    def draw(ax: Axes) -> None:
        ax.bar(range(NUM_CLASSES), counts, color=BAR_COLOUR)
        ax.set_xticks(range(NUM_CLASSES))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="Predicted digit", ylabel="Predictions")

    per_digit = ", ".join(f"{digit}: {count}" for digit, count in enumerate(counts))
    return _render(title, f"Bar chart of {sum(counts)} predictions per digit. {per_digit}", draw)


def confidence_histogram(confidences: list[float], bins: int = 20) -> str:
    title = "Confidence of predictions"
    if not confidences:
        return _no_data(title)

    def draw(ax: Axes) -> None:
        ax.hist(confidences, bins=bins, range=(0, 1), color=BAR_COLOUR, edgecolor="white", linewidth=0.5)
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=1))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="Confidence", ylabel="Predictions")

    below_half = sum(confidence < 0.5 for confidence in confidences)
    label = (
        f"Histogram of the confidence of {len(confidences)} predictions: median "
        f"{float(np.median(confidences)):.0%}, {below_half} below 50%"
    )
    return _render(title, label, draw)


def flagged_share_per_version(versions: list[str], shares: list[float], totals: list[int]) -> str:
    title = "Flagged share per model version"
    rows = list(zip(versions, shares, totals, strict=True))
    if not any(totals):
        return _no_data(title)
    counts = [f"{round(share * total)} of {total}" for _, share, total in rows]

    def draw(ax: Axes) -> None:
        bars = ax.bar(versions, shares, color=BAR_COLOUR)
        ax.bar_label(bars, labels=counts, padding=2, fontsize="small")
        # Headroom for the labels above the tallest bar; 1% when nothing was flagged at all.
        ax.set_ylim(0, max(*shares, 0.01) * 1.2)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
        ax.set(xlabel="Model version", ylabel="Predictions flagged")

    per_version = ", ".join(
        f"{version} {share:.1%} ({count})" for (version, share, _), count in zip(rows, counts, strict=True)
    )
    return _render(title, f"Bar chart of the share of flagged predictions per model version: {per_version}", draw)


def unsure_share_per_version(versions: list[str], unsure: list[int], not_a_digit: list[int], totals: list[int]) -> str:
    """Stacked bars: the share of each version's predictions it was not sure of, and the share
    it judged not a digit."""
    title = "Not sure or not a digit, per model version"
    rows = list(zip(versions, unsure, not_a_digit, totals, strict=True))
    if not any(totals):
        return _no_data(title)
    unsure_share = [u / t if t else 0.0 for _, u, _, t in rows]
    reject_share = [n / t if t else 0.0 for _, _, n, t in rows]

    def draw(ax: Axes) -> None:
        ax.bar(versions, unsure_share, color="#ffc107", label="not sure")  # Bootstrap's warning
        bars = ax.bar(versions, reject_share, bottom=unsure_share, color=MUTED_COLOUR, label="not a digit")
        ax.bar_label(bars, labels=[f"{u} + {n} of {t}" for _, u, n, t in rows], padding=2, fontsize="small")
        ax.set_ylim(0, max(*(u + n for u, n in zip(unsure_share, reject_share, strict=True)), 0.01) * 1.25)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
        ax.set(xlabel="Model version", ylabel="Predictions")
        ax.legend(frameon=False, fontsize="small", loc="upper left")

    per_version = ", ".join(f"{v} {u} not sure and {n} not a digit of {t}" for v, u, n, t in rows)
    return _render(title, f"Stacked bar chart of uncertain predictions per model version: {per_version}", draw)


def review_queue(days: list[datetime.date], sizes: list[int]) -> str:
    """How many predictions waited for review at the end of each day."""
    title = "Review queue at the end of each day"
    if len(days) != len(sizes):
        raise ValueError(f"{len(days)} days but {len(sizes)} sizes")
    if not any(sizes):
        return _no_data(title)

    def draw(ax: Axes) -> None:
        ax.plot(days, sizes, color=BAR_COLOUR, marker="o", markersize=3)
        locator = AutoDateLocator(maxticks=MAX_DATE_TICKS)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        ax.set_ylabel("Predictions to review")

    label = (
        f"Line chart of the review queue from {min(days).isoformat()} to {max(days).isoformat()}: "
        f"{sizes[0]} at the start, at most {max(sizes)}, {sizes[-1]} now"
    )
    return _render(title, label, draw)


def correction_confusion(matrix: list[list[int]]) -> str:
    title = "Flagged corrections: predicted vs correct"
    counts = np.asarray(matrix, dtype=int)
    if counts.size and counts.shape != (NUM_CLASSES, NUM_CLASSES):
        raise ValueError(f"expected a {NUM_CLASSES}x{NUM_CLASSES} matrix, got {counts.shape}")
    if not counts.any():
        return _no_data(title)

    def draw(ax: Axes) -> None:
        edges = np.arange(NUM_CLASSES + 1) - 0.5
        # pcolormesh stays vector; imshow would embed a 10x10 PNG that browsers blur when scaling.
        ax.pcolormesh(edges, edges, counts, cmap="Blues", vmin=0, edgecolors="white", linewidth=0.5)
        for (predicted, correct), count in np.ndenumerate(counts):
            if count:
                colour = "white" if count > counts.max() / 2 else TEXT_COLOUR
                ax.text(correct, predicted, str(count), ha="center", va="center", fontsize="small", color=colour)
        ax.set_aspect("equal")
        ax.invert_yaxis()  # row 0 on top, as the matrix is written
        ax.set(xticks=range(NUM_CLASSES), yticks=range(NUM_CLASSES), xlabel="Correct digit", ylabel="Predicted digit")

    predicted, correct = np.unravel_index(counts.argmax(), counts.shape)
    label = (
        f"Heat map of {counts.sum()} flagged corrections, predicted digit against correct digit; "
        f"most often predicted {predicted} where the correct digit was {correct} ({counts.max()} times)"
    )
    return _render(title, label, draw)


def version_metrics(versions: list[str], accuracies: list[float | None]) -> str:
    title = "MNIST test accuracy per model version"
    rows = list(zip(versions, accuracies, strict=True))
    measured = [(position, accuracy) for position, (_, accuracy) in enumerate(rows) if accuracy is not None]
    if not measured:
        return _no_data(title)
    lowest = min(accuracy for _, accuracy in measured)
    # Versions differ by tenths of a percent, invisible on a 0-100% axis. Starting half the gap to
    # 100% below the lowest bar keeps every bar at least a third of the axis tall.
    gap = max(1 - lowest, 0.01)
    bottom = max(0.0, math.floor((lowest - gap / 2) * 100) / 100)

    def draw(ax: Axes) -> None:
        positions, heights = zip(*measured, strict=True)
        bars = ax.bar(positions, heights, color=BAR_COLOUR)
        ax.bar_label(bars, labels=[f"{height:.1%}" for height in heights], padding=-11, fontsize="small", color="white")
        for position, (_, accuracy) in enumerate(rows):
            if accuracy is None:
                ax.annotate(
                    "n/a",
                    (position, bottom),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    color=MUTED_COLOUR,
                )
        ax.set_xticks(range(len(versions)), versions)
        ax.set_ylim(bottom, 1)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
        ax.set(xlabel="Model version", ylabel="Test accuracy")

    per_version = ", ".join(
        f"{version} {'not measured' if accuracy is None else f'{accuracy:.2%}'}" for version, accuracy in rows
    )
    return _render(title, f"Bar chart of MNIST test accuracy per model version: {per_version}", draw)


def _no_data(title: str) -> str:
    def draw(ax: Axes) -> None:
        ax.set_axis_off()
        ax.text(0.5, 0.5, NO_DATA, transform=ax.transAxes, ha="center", va="center", color=MUTED_COLOUR)

    return _render(title, f"{title}: {NO_DATA.lower()}", draw)


def _render(title: str, label: str, draw: Callable[[Axes], None]) -> str:
    """One styled figure, drawn by ``draw``, as an <svg> element that scales to its container."""
    buffer = io.StringIO()
    with _render_lock, matplotlib.rc_context(STYLE):
        figure = Figure(figsize=FIGURE_SIZE, layout="tight")
        ax = figure.add_subplot()
        ax.set_title(title)
        draw(ax)
        figure.savefig(buffer, format="svg", metadata=NO_METADATA)
    # matplotlib's <style> element would be refused by the Content-Security-Policy (and its `*`
    # rule would reach the whole page): static/css/site.css carries the rule for charts only.
    svg = _STYLE_ELEMENT.sub("", _COUNTER_ID.sub("", buffer.getvalue()))
    svg = svg[svg.index("<svg") :]  # the XML declaration and DOCTYPE are not allowed inside HTML
    tag_end = svg.index(">")
    attributes = _FIXED_SIZE.sub("", svg[len("<svg") : tag_end])
    name = html.escape(label)
    # Width 100% with the viewBox kept: the browser derives the height from the aspect ratio.
    return f'<svg width="100%"{attributes} role="img" aria-label="{name}"><title>{name}</title>{svg[tag_end + 1 :]}'
