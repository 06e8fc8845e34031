import datetime
import xml.etree.ElementTree as ET
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import matplotlib
import pytest

from classifier import charts

SVG = "{http://www.w3.org/2000/svg}"
DAY = datetime.date(2026, 3, 1)


def days_from(start: datetime.date, count: int) -> list[datetime.date]:
    return [start + datetime.timedelta(days=offset) for offset in range(count)]


def parse(svg: str) -> ET.Element:
    """The chart as an element, after checking it can be pasted into an HTML page as it is."""
    assert svg.startswith("<svg")  # no XML declaration or DOCTYPE
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("viewBox")
    assert root.get("width") == "100%"
    assert root.get("height") is None
    assert root.get("role") == "img"
    assert root.get("aria-label")
    assert root.find(f"{SVG}title").text == root.get("aria-label")
    return root


def texts(root: ET.Element) -> list[str]:
    return ["".join(text.itertext()) for text in root.iter(f"{SVG}text")]


def bars(root: ET.Element) -> int:
    return sum("fill: #0d6efd" in (path.get("style") or "") for path in root.iter(f"{SVG}path"))


def x_tick_labels(root: ET.Element) -> list[str]:
    """Horizontal centred labels sharing the most common baseline: the x axis tick labels."""
    rows: dict[int, list[str]] = {}
    for text in root.iter(f"{SVG}text"):
        if "text-anchor: middle" in text.get("style") and text.get("transform").startswith("rotate(-0 "):
            rows.setdefault(round(float(text.get("y"))), []).append("".join(text.itertext()))
    return max(rows.values(), key=len)


def percents(root: ET.Element) -> list[float]:
    return [float(text.rstrip("%")) for text in texts(root) if text.endswith("%")]


CHARTS = {
    "uploads": (charts.uploads_per_day, (days_from(DAY, 5), [3, 0, 7, 1, 2]), "Uploads per day"),
    "digits": (charts.predictions_per_digit, (list(range(10)),), "Predictions per digit"),
    "confidence": (charts.confidence_histogram, ([0.2, 0.9, 0.95, 0.99],), "Confidence of predictions"),
    "flagged": (
        charts.flagged_share_per_version,
        (["v1", "v2"], [0.3, 0.02], [10, 150]),
        "Flagged share per model version",
    ),
    "confusion": (
        charts.correction_confusion,
        ([[int(row == 4 and col == 9) for col in range(10)] for row in range(10)],),
        "Flagged corrections: predicted vs correct",
    ),
    "metrics": (charts.version_metrics, (["v1", "v2"], [0.98, 0.99]), "MNIST test accuracy per model version"),
}
EMPTY = {
    "uploads": (charts.uploads_per_day, ([], [])),
    "uploads all zero": (charts.uploads_per_day, (days_from(DAY, 3), [0, 0, 0])),
    "digits": (charts.predictions_per_digit, ([],)),
    "digits all zero": (charts.predictions_per_digit, ([0] * 10,)),
    "confidence": (charts.confidence_histogram, ([],)),
    "flagged": (charts.flagged_share_per_version, ([], [], [])),
    "flagged nothing predicted": (charts.flagged_share_per_version, (["v1"], [0.0], [0])),
    "confusion": (charts.correction_confusion, ([],)),
    "confusion all zero": (charts.correction_confusion, ([[0] * 10 for _ in range(10)],)),
    "metrics": (charts.version_metrics, ([], [])),
    "metrics unmeasured": (charts.version_metrics, (["v1", "v2"], [None, None])),
}


@pytest.mark.parametrize(("chart", "data", "title"), CHARTS.values(), ids=CHARTS.keys())
def test_chart_is_titled_accessible_embeddable_svg(chart, data, title):
    root = parse(chart(*data))
    assert title in texts(root)  # real <text>, thanks to svg.fonttype "none"
    assert root.get("aria-label").lower().startswith(("bar chart", "histogram", "heat map"))
    assert "No data yet" not in texts(root)


@pytest.mark.parametrize(("chart", "data"), EMPTY.values(), ids=EMPTY.keys())
def test_no_data_renders_a_placeholder(chart, data):
    root = parse(chart(*data))
    assert "No data yet" in texts(root)
    assert root.get("aria-label").endswith(": no data yet")
    assert bars(root) == 0


def test_uploads_per_day_has_a_bar_per_day_and_its_total_in_the_label():
    root = parse(charts.uploads_per_day(days_from(DAY, 5), [3, 0, 7, 1, 2]))
    assert bars(root) == 5
    label = root.get("aria-label")
    assert "13 uploads from 2026-03-01 to 2026-03-05" in label
    assert "at most 7 on 2026-03-03" in label


@pytest.mark.parametrize("day_count", [1, 2, 30, 90, 400])
def test_uploads_per_day_labels_days_with_at_most_ten_ticks(day_count):
    root = parse(charts.uploads_per_day(days_from(DAY, day_count), [1] * day_count))
    labels = x_tick_labels(root)
    assert 2 <= len(labels) <= 10
    assert not any(":" in label for label in labels)  # days or months, never hours


def test_uploads_per_day_rejects_mismatched_lists():
    with pytest.raises(ValueError, match="3 days but 2 counts"):
        charts.uploads_per_day(days_from(DAY, 3), [1, 2])


def test_predictions_per_digit_has_ten_labelled_bars():
    root = parse(charts.predictions_per_digit([5, 0, 3, 8, 1, 0, 0, 2, 9, 4]))
    assert bars(root) == 10
    assert x_tick_labels(root) == [str(digit) for digit in range(10)]
    assert "Predicted digit" in texts(root)
    assert "0: 5, 1: 0, 2: 3" in root.get("aria-label")


def test_predictions_per_digit_needs_one_count_per_digit():
    with pytest.raises(ValueError, match="expected 10 counts"):
        charts.predictions_per_digit([1, 2, 3])


@pytest.mark.parametrize("bins", [5, 20])
def test_confidence_histogram_bins_zero_to_one_hundred_percent(bins):
    root = parse(charts.confidence_histogram([0.1, 0.55, 0.97, 0.98, 1.0], bins=bins))
    assert bars(root) == bins
    labels = x_tick_labels(root)
    assert labels[0] == "0%"
    assert labels[-1] == "100%"
    assert "median 97%, 1 below 50%" in root.get("aria-label")


def test_flagged_share_per_version_annotates_each_bar_with_k_of_n():
    # 0.29 of 10 is 2.9 flags: shares arrive rounded, so k is rounded back, not truncated.
    root = parse(charts.flagged_share_per_version(["v1", "v2", "v3"], [0.29, 1 / 3, 0.0], [10, 3, 40]))
    assert bars(root) == 3
    assert {"v1", "v2", "v3", "3 of 10", "1 of 3", "0 of 40"} <= set(texts(root))
    assert "v1 29.0% (3 of 10)" in root.get("aria-label")
    assert max(percents(root)) >= 33.3  # the y axis is in percent and reaches the tallest bar


def test_flagged_share_per_version_rejects_mismatched_lists():
    with pytest.raises(ValueError, match="zip"):
        charts.flagged_share_per_version(["v1", "v2"], [0.1], [10, 20])


def test_correction_confusion_puts_predicted_on_rows_and_correct_on_columns():
    matrix = [[0] * 10 for _ in range(10)]
    matrix[0][9] = 11  # predicted 0, correct 9: top right
    matrix[9][0] = 22  # predicted 9, correct 0: bottom left
    matrix[4][7] = 33
    root = parse(charts.correction_confusion(matrix))
    found = texts(root)
    assert {"Correct digit", "Predicted digit"} <= set(found)
    annotations = {
        "".join(text.itertext()): (float(text.get("x")), float(text.get("y")))
        for text in root.iter(f"{SVG}text")
        if "".join(text.itertext()) in {"11", "22", "33"}
    }
    assert Counter(found)["11"] == Counter(found)["22"] == Counter(found)["33"] == 1  # zeros are not annotated
    assert len([text for text in found if text.isdigit() and int(text) >= 10]) == 3
    (x_top, y_top), (x_bottom, y_bottom) = annotations["11"], annotations["22"]
    assert x_top > x_bottom  # correct digit grows to the right
    assert y_top < y_bottom  # predicted digit grows downwards, row 0 on top as in the matrix
    assert "fill: #08306b" in ET.tostring(root, encoding="unicode")  # the darkest "Blues" for the largest count
    assert "most often predicted 4 where the correct digit was 7 (33 times)" in root.get("aria-label")


def test_correction_confusion_needs_a_ten_by_ten_matrix():
    with pytest.raises(ValueError, match="10x10"):
        charts.correction_confusion([[1, 2], [3, 4]])


def test_version_metrics_zooms_in_and_marks_missing_accuracy():
    root = parse(charts.version_metrics(["v1", "v2", "v3"], [0.975, None, 0.9921]))
    assert bars(root) == 2
    found = texts(root)
    assert {"v1", "v2", "v3", "n/a", "97.5%", "99.2%"} <= set(found)
    assert min(percents(root)) >= 90  # the axis starts a little below the lowest accuracy
    assert max(percents(root)) == 100
    assert "v2 not measured" in root.get("aria-label")


def test_labels_are_escaped():
    version = 'v1 "<b>&'
    root = parse(charts.version_metrics([version], [0.99]))
    assert version in root.get("aria-label")
    assert version in texts(root)


def test_charts_on_one_page_share_no_ids():
    page = "<div>{}</div>".format("".join(chart(*data) for chart, data, _ in [*CHARTS.values(), *CHARTS.values()]))
    ids = [element.get("id") for element in ET.fromstring(page).iter() if element.get("id")]
    assert ids  # clip paths and tick markers keep their (hashed) ids
    assert len(ids) == len(set(ids))


def test_rendering_in_threads_keeps_the_style_and_leaves_global_settings_alone():
    fonttype = matplotlib.rcParams["svg.fonttype"]
    chart, data, title = CHARTS["digits"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        svgs = list(pool.map(lambda _: chart(*data), range(16)))
    for svg in svgs:
        assert title in texts(parse(svg))
        assert "font-size: 9px" in svg
    assert matplotlib.rcParams["svg.fonttype"] == fonttype
