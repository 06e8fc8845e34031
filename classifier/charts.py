"""The statistics page's charts: inline SVG with real text, drawn from the numbers the
selectors count, with those numbers again as a table for screen readers and exact figures.

Every chart is WIDTH user units wide and scales to its container through its viewBox. On a
390 px phone a chart's box is about 348 CSS px wide, so text set at FONT_SIZE units renders at
about 13 px there, and at most 18 px anywhere (static/css/site.css caps a chart at 30rem).
Presentation attributes only, no style attributes: the Content-Security-Policy has no say
over them.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from ml.serving.artifacts import NUM_CLASSES

WIDTH = 320
FONT_SIZE = 12
CHARACTER_WIDTH = 7.0  # a generous average advance at FONT_SIZE, to lay labels out without measuring them
LINE = 16  # height of a row of text
COLUMNS_HEIGHT = 170  # vertical bar charts: plot and axes together
ROW_HEIGHT = 26  # horizontal bar charts: one row per model version
BAR_COLOUR = "#0d6efd"  # Bootstrap's primary, so the charts match the rest of the site
WARNING_COLOUR = "#ffc107"  # Bootstrap's warning, as the "not sure" badge
MUTED_COLOUR = "#6c757d"  # Bootstrap's secondary: axes, labels, "not a digit"
GRID_COLOUR = "#dee2e6"  # Bootstrap's border
EMPTY_CELL = "#f8f9fa"
DAY_TICK_EVERY = 7  # label a week apart, counted back from today, so today is always labelled


@dataclass(frozen=True)
class Chart:
    title: str
    summary: str  # one sentence: the SVG's accessible name
    svg: SafeString  # empty when there is nothing to draw
    columns: tuple[str, ...] = ()  # the table of the numbers drawn
    rows: list[tuple[str, ...]] = field(default_factory=list)


def uploads_per_day(days: Sequence[datetime.date], counts: Sequence[int]) -> Chart:
    title = "Uploads per day"
    _same_length(days, counts, "counts")
    rows = [(day.isoformat(), _count(count)) for day, count in zip(days, counts, strict=True)]
    if not any(counts):
        return _no_data(title, ("Day", "Uploads"), rows)
    busiest, day = max(zip(counts, days, strict=True))
    summary = (
        f"Bar chart of uploads per day from {days[0].isoformat()} to {days[-1].isoformat()}: "
        f"{sum(counts)} in all, at most {busiest} on {day.isoformat()}"
    )
    svg = _columns(counts, ticks=_day_ticks(days), summary=summary)
    return Chart(title, summary, svg, ("Day", "Uploads"), rows)


def review_queue(days: Sequence[datetime.date], sizes: Sequence[int]) -> Chart:
    """How many predictions waited for review at the end of each day."""
    title = "Review queue at the end of each day"
    _same_length(days, sizes, "sizes")
    rows = [(day.isoformat(), _count(size)) for day, size in zip(days, sizes, strict=True)]
    if not any(sizes):
        return _no_data(title, ("Day", "Waiting"), rows)
    summary = (
        f"Bar chart of the review queue from {days[0].isoformat()} to {days[-1].isoformat()}: "
        f"{sizes[0]} at the start, at most {max(sizes)}, {sizes[-1]} now"
    )
    svg = _columns(sizes, ticks=_day_ticks(days), summary=summary, colour=MUTED_COLOUR)
    return Chart(title, summary, svg, ("Day", "Waiting"), rows)


def predictions_per_digit(counts: Sequence[int]) -> Chart:
    title = "Predictions per digit"
    if len(counts) != NUM_CLASSES:
        raise ValueError(f"expected {NUM_CLASSES} counts, one per digit, got {len(counts)}")
    rows = [(str(digit), _count(count)) for digit, count in enumerate(counts)]
    if not any(counts):
        return _no_data(title, ("Digit", "Predictions"), rows)
    per_digit = ", ".join(f"{digit}: {count}" for digit, count in enumerate(counts))
    summary = f"Bar chart of {sum(counts)} predictions per predicted digit. {per_digit}"
    ticks = [(digit + 0.5, str(digit)) for digit in range(NUM_CLASSES)]
    svg = _columns(counts, ticks=ticks, summary=summary, value_labels=[_compact(count) for count in counts])
    return Chart(title, summary, svg, ("Digit", "Predictions"), rows)


def confidence_histogram(bins: Sequence[int]) -> Chart:
    """``bins`` counts predictions in equal slices of 0-100% confidence, the lowest first."""
    title = "Confidence of predictions"
    width = 100 / len(bins)
    rows = [
        (f"{_number(index * width)}-{_number((index + 1) * width)}%", _count(count)) for index, count in enumerate(bins)
    ]
    if not any(bins):
        return _no_data(title, ("Confidence", "Predictions"), rows)
    half = len(bins) // 2
    summary = (
        f"Histogram of the confidence of {sum(bins)} predictions in {_number(width)}% steps: "
        f"{sum(bins[:half])} below 50%, {bins[-1]} at {_number(100 - width)}% or more"
    )
    quarters = [(len(bins) * quarter / 4, f"{25 * quarter}%") for quarter in range(5)]
    svg = _columns(bins, ticks=quarters, summary=summary, gap=0.1)
    return Chart(title, summary, svg, ("Confidence", "Predictions"), rows)


def flagged_share_per_version(versions: Sequence[str], flagged: Sequence[int], totals: Sequence[int]) -> Chart:
    title = "Flagged share per model version"
    columns = ("Version", "Predictions", "Flagged", "Share")
    lines = list(zip(versions, flagged, totals, strict=True))
    shares = [k / n if n else 0.0 for _, k, n in lines]
    rows = [(v, _count(n), _count(k), _percent(s)) for (v, k, n), s in zip(lines, shares, strict=True)]
    if not any(totals):
        return _no_data(title, columns, rows)
    per_version = ", ".join(f"{v} {_percent(s)} ({k} of {n})" for (v, k, n), s in zip(lines, shares, strict=True))
    summary = f"Bar chart of the share of each model version's predictions that staff flagged: {per_version}"
    scale = _axis(max(shares), integer=False)[-1] if any(shares) else 1.0
    bars = [
        (v, [(s / scale, BAR_COLOUR)], f"{_percent(s)} ({_compact(k)} of {_compact(n)})")
        for (v, k, n), s in zip(lines, shares, strict=True)
    ]
    return Chart(title, summary, _rows(bars, summary=summary, note=f"full width: {_percent(scale)}"), columns, rows)


def unsure_share_per_version(
    versions: Sequence[str], unsure: Sequence[int], not_a_digit: Sequence[int], totals: Sequence[int]
) -> Chart:
    """Stacked bars: the share of each version's predictions it was not sure of, and the share
    it judged not a digit."""
    title = "Not sure or not a digit, per model version"
    columns = ("Version", "Predictions", "Not sure", "Not a digit")
    lines = list(zip(versions, unsure, not_a_digit, totals, strict=True))
    rows = [(v, _count(t), _count(u), _count(n)) for v, u, n, t in lines]
    if not any(totals):
        return _no_data(title, columns, rows)
    per_version = ", ".join(f"{v} {u} not sure and {n} not a digit of {t}" for v, u, n, t in lines)
    summary = f"Stacked bar chart of uncertain predictions per model version: {per_version}"
    shares = [(u / t, n / t) if t else (0.0, 0.0) for _, u, n, t in lines]
    largest = max(u + n for u, n in shares)
    scale = _axis(largest, integer=False)[-1] if largest else 1.0
    bars = [
        (v, [(u / scale, WARNING_COLOUR), (n / scale, MUTED_COLOUR)], f"{_percent(u)} + {_percent(n)}")
        for (v, *_), (u, n) in zip(lines, shares, strict=True)
    ]
    legend = [("not sure", WARNING_COLOUR), ("not a digit", MUTED_COLOUR)]
    svg = _rows(bars, summary=summary, legend=legend, note=f"full width: {_percent(scale)}")
    return Chart(title, summary, svg, columns, rows)


def version_metrics(versions: Sequence[str], accuracies: Sequence[float | None]) -> Chart:
    title = "MNIST test accuracy per model version"
    lines = list(zip(versions, accuracies, strict=True))
    rows = [(v, "not measured" if a is None else f"{a:.2%}") for v, a in lines]
    measured = [a for _, a in lines if a is not None]
    if not measured:
        return _no_data(title, ("Version", "Accuracy"), rows)
    # Versions differ by tenths of a percent, invisible on a 0-100% scale. Starting half the gap
    # to 100% below the lowest keeps every bar at least a third of the width, and the note says so.
    lowest = min(measured)
    gap = max(1 - lowest, 0.01)
    floor = max(0.0, math.floor((lowest - gap / 2) * 100) / 100)
    per_version = ", ".join(f"{v} {'not measured' if a is None else f'{a:.2%}'}" for v, a in lines)
    summary = f"Bar chart of MNIST test accuracy per model version: {per_version}"
    bars = [
        (v, [] if a is None else [((a - floor) / (1 - floor), BAR_COLOUR)], "n/a" if a is None else f"{a:.2%}")
        for v, a in lines
    ]
    svg = _rows(bars, summary=summary, note=f"bars from {floor:.0%} to 100%")
    return Chart(title, summary, svg, ("Version", "Accuracy"), rows)


def correction_confusion(matrix: Sequence[Sequence[int]]) -> Chart:
    """Staff corrections as a grid: predicted digit down, correct digit across."""
    title = "Flagged corrections: predicted vs correct"
    columns = ("Predicted", "Correct", "Flags")
    if len(matrix) != NUM_CLASSES or any(len(row) != NUM_CLASSES for row in matrix):
        raise ValueError(f"expected a {NUM_CLASSES}x{NUM_CLASSES} matrix")
    cells = [(p, c, n) for p, row in enumerate(matrix) for c, n in enumerate(row)]
    rows = [(str(p), str(c), _count(n)) for p, c, n in cells if n]
    if not rows:
        return _no_data(title, columns, rows)
    most, predicted, correct = max((n, p, c) for p, c, n in cells)
    summary = (
        f"Heat map of {sum(n for *_, n in cells)} flagged corrections, predicted digit against correct "
        f"digit; most often predicted {predicted} where the correct digit was {correct} ({most} times)"
    )
    return Chart(title, summary, _grid(matrix, most, summary=summary), columns, rows)


def _columns(
    values: Sequence[int],
    *,
    ticks: Sequence[tuple[float, str]],
    summary: str,
    value_labels: Sequence[str] | None = None,
    colour: str = BAR_COLOUR,
    gap: float = 0.2,
) -> SafeString:
    """Vertical bars, one per value, on a y axis from 0. A tick at position i is bar i's left
    edge, i + 0.5 its centre."""
    levels = _axis(max(values), integer=True)
    labels = [_compact(level) for level in levels]
    left = max(len(label) for label in labels) * CHARACTER_WIDTH + 6
    # Room on the right for half the last tick label where it sits at the last bar or beyond.
    overhang = len(ticks[-1][1]) * CHARACTER_WIDTH / 2 + 4 if ticks and ticks[-1][0] >= len(values) - 0.5 else 0
    right = WIDTH - max(4.0, overhang)
    top = LINE + 2 if value_labels else 8
    bottom = COLUMNS_HEIGHT - LINE - 4
    step = (right - left) / len(values)
    scale = (bottom - top) / levels[-1]

    parts = []
    for level, label in zip(levels, labels, strict=True):
        y = bottom - level * scale
        parts.append(_line(left, y, right, y, GRID_COLOUR))
        parts.append(_text(left - 4, y + FONT_SIZE / 3, label, anchor="end", fill=MUTED_COLOUR))
    for index, value in enumerate(values):
        if value:
            height = max(value * scale, 1.0)  # one among thousands still shows
            x = left + (index + gap / 2) * step
            parts.append(_rect(x, bottom - height, step * (1 - gap), height, colour))
            if value_labels:
                parts.append(_text(x + step * (1 - gap) / 2, bottom - height - 4, value_labels[index]))
    parts.append(_line(left, bottom, right, bottom, MUTED_COLOUR))
    for position, text in ticks:
        parts.append(_text(left + position * step, bottom + LINE, text, fill=MUTED_COLOUR))
    return _svg(COLUMNS_HEIGHT, summary, parts)


def _rows(
    bars: Sequence[tuple[str, Sequence[tuple[float, str]], str]],
    *,
    summary: str,
    legend: Sequence[tuple[str, str]] = (),
    note: str = "",
) -> SafeString:
    """Horizontal bars, one row each: a label, segments stacked left to right (each a fraction
    of the full width and a colour), and the figures as text in a column of their own."""
    label_width = max(len(label) for label, _, _ in bars) * CHARACTER_WIDTH + 6
    text_width = max(len(text) for _, _, text in bars) * CHARACTER_WIDTH
    left, right = label_width, WIDTH - text_width - 6
    parts, y = [], 0.0
    if legend:
        x = 0.0
        for name, colour in legend:
            parts.append(_rect(x, y + 3, 12, 12, colour))
            parts.append(_text(x + 16, y + 13, name, anchor="start"))
            x += 16 + len(name) * CHARACTER_WIDTH + 12
        y += LINE + 4
    for label, segments, text in bars:
        parts.append(_text(0, y + ROW_HEIGHT / 2 + FONT_SIZE / 3, label, anchor="start"))
        parts.append(_rect(left, y + 4, right - left, ROW_HEIGHT - 8, EMPTY_CELL))
        x = left
        for fraction, colour in segments:
            width = min(fraction, 1.0) * (right - left)
            if width > 0:
                parts.append(_rect(x, y + 4, width, ROW_HEIGHT - 8, colour))
                x += width
        parts.append(_text(WIDTH - 2, y + ROW_HEIGHT / 2 + FONT_SIZE / 3, text, anchor="end"))
        y += ROW_HEIGHT
    if note:
        parts.append(_text(left, y + FONT_SIZE, note, anchor="start", fill=MUTED_COLOUR))
        y += LINE + 2
    return _svg(y, summary, parts)


def _grid(matrix: Sequence[Sequence[int]], most: int, *, summary: str) -> SafeString:
    """A heat map: rows are the predicted digit (0 on top), columns the correct digit."""
    left, top = 2 * LINE + 4, 2 * LINE + 2
    cell = (WIDTH - left) / NUM_CLASSES
    parts = [
        _text(left + cell * NUM_CLASSES / 2, FONT_SIZE, "Correct digit", fill=MUTED_COLOUR),
        _text(
            FONT_SIZE,
            top + cell * NUM_CLASSES / 2,
            "Predicted digit",
            fill=MUTED_COLOUR,
            transform=f"rotate(-90 {FONT_SIZE} {_number(top + cell * NUM_CLASSES / 2)})",
        ),
    ]
    for digit in range(NUM_CLASSES):
        parts.append(_text(left + (digit + 0.5) * cell, top - 6, str(digit), fill=MUTED_COLOUR))
        parts.append(
            _text(left - 6, top + (digit + 0.5) * cell + FONT_SIZE / 3, str(digit), anchor="end", fill=MUTED_COLOUR)
        )
    for predicted, row in enumerate(matrix):
        for correct, count in enumerate(row):
            x, y = left + correct * cell, top + predicted * cell
            if not count:
                parts.append(_rect(x + 1, y + 1, cell - 2, cell - 2, EMPTY_CELL))
                continue
            strength = 0.15 + 0.85 * count / most
            parts.append(_rect(x + 1, y + 1, cell - 2, cell - 2, BAR_COLOUR, opacity=strength))
            ink = "#fff" if strength > 0.55 else "#212529"
            parts.append(_text(x + cell / 2, y + cell / 2 + FONT_SIZE / 3, _compact(count), fill=ink))
    return _svg(top + cell * NUM_CLASSES, summary, parts)


def _svg(height: float, summary: str, parts: Sequence[str]) -> SafeString:
    # width="100%" with the viewBox: the browser scales the chart to its box and keeps the aspect.
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" width="100%" role="img" aria-label="{}"'
        ' font-size="{}" fill="#212529"><title>{}</title>{}</svg>',
        WIDTH,
        _number(height),
        summary,
        FONT_SIZE,
        summary,
        mark_safe("".join(parts)),  # each part was built by format_html
    )


def _text(x: float, y: float, content: str, *, anchor: str = "middle", **attributes) -> str:
    return format_html(
        '<text x="{}" y="{}" text-anchor="{}"{}>{}</text>',
        _number(x),
        _number(y),
        anchor,
        _attributes(attributes),
        content,
    )


def _rect(x: float, y: float, width: float, height: float, colour: str, *, opacity: float = 1) -> str:
    extra = {"fill-opacity": f"{opacity:.2f}"} if opacity < 1 else {}
    return format_html(
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"{}/>',
        _number(x),
        _number(y),
        _number(width),
        _number(height),
        colour,
        _attributes(extra),
    )


def _line(x1: float, y1: float, x2: float, y2: float, colour: str) -> str:
    return format_html(
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}"/>',
        _number(x1),
        _number(y1),
        _number(x2),
        _number(y2),
        colour,
    )


def _attributes(attributes: dict) -> SafeString:
    return format_html_join("", ' {}="{}"', ((name.replace("_", "-"), value) for name, value in attributes.items()))


def _no_data(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> Chart:
    return Chart(title, f"{title}: no data yet", mark_safe(""), columns, rows)


def _day_ticks(days: Sequence[datetime.date]) -> list[tuple[float, str]]:
    last = len(days) - 1
    return [(index + 0.5, f"{days[index].day} {days[index]:%b}") for index in range(last, -1, -DAY_TICK_EVERY)][::-1]


def _axis(maximum: float, *, integer: bool) -> list[float]:
    """Round, evenly spaced levels from 0 to at least ``maximum``: at most five, whole numbers
    for counts."""
    raw = maximum / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    if integer:
        step = max(1, math.ceil(step))
    return [index * step for index in range(math.ceil(maximum / step - 1e-9) + 1)]


def _same_length(days: Sequence, values: Sequence, name: str) -> None:
    if len(days) != len(values):
        raise ValueError(f"{len(days)} days but {len(values)} {name}")


def _number(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _count(value: int) -> str:
    return f"{value:,}"


def _compact(value: float) -> str:
    """A count short enough to sit above a bar: 987, 1.2k, 20k, 1.5M."""
    for divisor, suffix in ((1_000_000, "M"), (1_000, "k")):
        if value >= divisor:
            scaled = value / divisor
            return f"{scaled:.1f}".removesuffix(".0") + suffix if scaled < 10 else f"{scaled:.0f}{suffix}"
    return _number(value)


def _percent(share: float) -> str:
    """A share as a percentage with the decimals it needs: 30%, 2.5%, 0.04%."""
    digits = 1 if share == 0 or share >= 0.1 else max(1, 1 - math.floor(math.log10(share * 100)))
    return f"{share * 100:.{digits}f}".rstrip("0").rstrip(".") + "%"
