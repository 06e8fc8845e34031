import datetime
import itertools
import xml.etree.ElementTree as ET

import pytest
from django.template.loader import render_to_string

from classifier import charts

SVG = "{http://www.w3.org/2000/svg}"
DAY = datetime.date(2026, 3, 1)


def days_from(start: datetime.date, count: int) -> list[datetime.date]:
    return [start + datetime.timedelta(days=offset) for offset in range(count)]


def parse(chart: charts.Chart) -> ET.Element:
    """The chart's SVG as an element, after checking it can be pasted into an HTML page as it is
    and scales to its box."""
    svg = str(chart.svg)
    assert svg.startswith("<svg")
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("viewBox").startswith(f"0 0 {charts.WIDTH} ")
    assert root.get("width") == "100%" and root.get("height") is None
    assert root.get("role") == "img"
    assert root.get("aria-label") == chart.summary
    assert root.find(f"{SVG}title").text == chart.summary
    return root


def texts(root: ET.Element) -> list[str]:
    return ["".join(text.itertext()) for text in root.iter(f"{SVG}text")]


def bars(root: ET.Element, colour: str = charts.BAR_COLOUR) -> list[ET.Element]:
    return [rect for rect in root.iter(f"{SVG}rect") if rect.get("fill") == colour]


def size(rect: ET.Element, dimension: str) -> float:
    return float(rect.get(dimension))


def font_sizes(root: ET.Element) -> set[float]:
    """The font size of every <text>, its own or the one it inherits from the <svg>."""
    return {float(text.get("font-size") or root.get("font-size")) for text in root.iter(f"{SVG}text")}


def assert_proportional(lengths: list[float], values: list[float]) -> None:
    ratios = [length / value for length, value in zip(lengths, values, strict=True)]
    assert max(ratios) == pytest.approx(min(ratios), rel=0.02), ratios


CHARTS = {
    "uploads": lambda: charts.uploads_per_day(days_from(DAY, 5), [3, 0, 7, 1, 2]),
    "queue": lambda: charts.review_queue(days_from(DAY, 3), [4, 6, 2]),
    "digits": lambda: charts.predictions_per_digit(list(range(10))),
    "confidence": lambda: charts.confidence_histogram([0] * 15 + [1, 0, 2, 5, 30]),
    "flagged": lambda: charts.flagged_share_per_version(["v1", "v2"], [3, 3], [10, 150]),
    "uncertain": lambda: charts.unsure_share_per_version(["v1", "v2"], [2, 5], [1, 0], [4, 100]),
    "confusion": lambda: charts.correction_confusion([[int(r == 4 and c == 9) for c in range(10)] for r in range(10)]),
    "metrics": lambda: charts.version_metrics(["v1", "v2"], [0.98, 0.99]),
}
EMPTY = {
    "uploads all zero": lambda: charts.uploads_per_day(days_from(DAY, 3), [0, 0, 0]),
    "queue all zero": lambda: charts.review_queue(days_from(DAY, 3), [0, 0, 0]),
    "digits all zero": lambda: charts.predictions_per_digit([0] * 10),
    "confidence": lambda: charts.confidence_histogram([0] * 20),
    "flagged no versions": lambda: charts.flagged_share_per_version([], [], []),
    "flagged nothing predicted": lambda: charts.flagged_share_per_version(["v1"], [0], [0]),
    "uncertain nothing predicted": lambda: charts.unsure_share_per_version(["v1"], [0], [0], [0]),
    "confusion all zero": lambda: charts.correction_confusion([[0] * 10 for _ in range(10)]),
    "metrics no versions": lambda: charts.version_metrics([], []),
    "metrics unmeasured": lambda: charts.version_metrics(["v1", "v2"], [None, None]),
}


@pytest.mark.parametrize("make", CHARTS.values(), ids=CHARTS.keys())
def test_a_chart_is_accessible_svg_with_text_big_enough_for_a_phone_and_its_numbers(make):
    chart = make()
    root = parse(chart)
    assert chart.summary.lower().startswith(("bar chart", "stacked bar chart", "histogram", "heat map"))
    assert texts(root)  # real <text>, not outlines
    # 12 units in a WIDTH-unit viewBox stay >= 12 px in any box at least WIDTH px wide (a phone's is ~348).
    assert min(font_sizes(root)) >= 12 and charts.WIDTH <= 348
    assert chart.rows and all(len(row) == len(chart.columns) for row in chart.rows)
    assert "<style" not in str(chart.svg) and "style=" not in str(chart.svg)  # presentation attributes only


@pytest.mark.parametrize("make", EMPTY.values(), ids=EMPTY.keys())
def test_no_data_draws_nothing_and_the_page_says_no_data_yet(make):
    chart = make()
    assert str(chart.svg) == ""
    assert chart.summary.endswith(": no data yet")
    html = render_to_string("classifier/_chart.html", {"chart": chart})
    assert "No data yet" in html and chart.title in html and "<svg" not in html


def test_the_chart_template_embeds_the_svg_and_a_table_of_the_numbers():
    chart = charts.predictions_per_digit([5, 0, 3, 8, 1, 0, 0, 2, 9, 12_345])
    html = render_to_string("classifier/_chart.html", {"chart": chart})
    assert str(chart.svg) in html  # not escaped
    assert "<figcaption" in html and "Predictions per digit" in html
    assert '<th scope="col">Digit</th>' in html and "<td>9</td><td>12,345</td>" in html


def test_uploads_per_day_draws_a_bar_per_day_with_data_proportional_to_the_counts():
    counts = [3, 0, 7, 1, 2]
    chart = charts.uploads_per_day(days_from(DAY, 5), counts)
    root = parse(chart)
    drawn = bars(root)
    assert len(drawn) == 4  # a day without uploads has no bar
    assert_proportional([size(bar, "height") for bar in drawn], [3, 7, 1, 2])
    xs = [size(bar, "x") for bar in drawn]
    assert xs == sorted(xs)  # oldest day on the left
    assert "13 in all, at most 7 on 2026-03-03" in chart.summary
    assert ("2026-03-03", "7") in chart.rows


def test_a_single_days_bar_is_as_wide_as_any_other_on_a_fixed_day_axis():
    days = days_from(DAY, 30)
    one = parse(charts.uploads_per_day(days, [0] * 29 + [11]))
    full = parse(charts.uploads_per_day(days, [1] * 30))
    (bar,) = bars(one)
    last = bars(full)[-1]
    # Equal but for the y axis labels' width ("15" against "1").
    assert size(bar, "width") == pytest.approx(size(last, "width"), rel=0.05) and size(bar, "width") > 7
    assert size(bar, "x") == pytest.approx(size(last, "x"), abs=1)  # today's slot, not a corner of its own
    labels = [text for text in texts(one) if "Mar" in text]
    assert labels[-1] == "30 Mar" and 3 <= len(labels) <= 6  # a week apart, ending today


def test_day_charts_refuse_mismatched_lists():
    with pytest.raises(ValueError, match="3 days but 2 counts"):
        charts.uploads_per_day(days_from(DAY, 3), [1, 2])
    with pytest.raises(ValueError, match="3 days but 1 sizes"):
        charts.review_queue(days_from(DAY, 3), [1])


def test_the_y_axis_reaches_the_tallest_bar_with_round_whole_levels():
    root = parse(charts.uploads_per_day(days_from(DAY, 3), [1, 23, 4]))
    levels = [int(text) for text in texts(root) if text.isdigit()]
    assert levels[0] == 0 and levels[-1] >= 23 and len(levels) <= 6
    assert len({b - a for a, b in itertools.pairwise(levels)}) == 1


def test_predictions_per_digit_labels_ten_bars_with_compact_counts():
    counts = [5, 0, 3, 8, 1, 0, 0, 2, 9, 4]
    chart = charts.predictions_per_digit(counts)
    root = parse(chart)
    drawn = bars(root)
    assert len(drawn) == 7
    assert_proportional([size(bar, "height") for bar in drawn], [c for c in counts if c])
    assert "0: 5, 1: 0, 2: 3" in chart.summary
    found = texts(parse(charts.predictions_per_digit([7_000, 0, 0, 0, 0, 0, 0, 0, 0, 12_345])))
    assert found[-10:] == [str(digit) for digit in range(10)]  # under the bars, after the counts above them
    assert {"7k", "12k"} <= set(found) and "12345" not in found  # the table has the exact count


def test_predictions_per_digit_needs_one_count_per_digit():
    with pytest.raises(ValueError, match="expected 10 counts"):
        charts.predictions_per_digit([1, 2, 3])


def test_confidence_histogram_spans_zero_to_one_hundred_percent():
    bins = [0] * 10 + [1, 0, 0, 0, 0, 2, 0, 0, 5, 30]
    chart = charts.confidence_histogram(bins)
    root = parse(chart)
    assert_proportional([size(bar, "height") for bar in bars(root)], [1, 2, 5, 30])
    assert [t for t in texts(root) if t.endswith("%")] == ["0%", "25%", "50%", "75%", "100%"]
    assert "38 predictions in 5% steps: 0 below 50%, 30 at 95% or more" in chart.summary
    assert chart.rows[0] == ("0-5%", "0") and chart.rows[-1] == ("95-100%", "30")


def test_flagged_share_per_version_draws_shares_and_says_k_of_n():
    chart = charts.flagged_share_per_version(["v1", "v2", "v3"], [3, 1, 0], [10, 3, 40])
    root = parse(chart)
    drawn = bars(root)
    assert len(drawn) == 2  # nothing flagged, no bar
    assert_proportional([size(bar, "width") for bar in drawn], [0.3, 1 / 3])
    assert {"v1", "v2", "v3", "30% (3 of 10)", "33.3% (1 of 3)", "0% (0 of 40)"} <= set(texts(root))
    assert "v1 30% (3 of 10)" in chart.summary
    assert ("v2", "3", "1", "33.3%") in chart.rows


def test_shares_of_large_numbers_stay_short():
    chart = charts.flagged_share_per_version(["v1"], [1_234], [200_000])
    assert "0.62% (1.2k of 200k)" in texts(parse(chart))
    assert chart.rows == [("v1", "200,000", "1,234", "0.62%")]


def test_flagged_share_per_version_refuses_mismatched_lists():
    with pytest.raises(ValueError, match="zip"):
        charts.flagged_share_per_version(["v1", "v2"], [1], [10, 20])


def test_unsure_share_per_version_stacks_not_sure_then_not_a_digit():
    chart = charts.unsure_share_per_version(["v1", "v2"], [2, 10], [1, 30], [4, 100])
    root = parse(chart)
    unsure, rejected = bars(root, charts.WARNING_COLOUR), bars(root, charts.MUTED_COLOUR)
    assert len(unsure) == len(rejected) == 3  # a legend swatch each, then a segment per version
    assert_proportional([size(bar, "width") for bar in unsure[1:] + rejected[1:]], [0.5, 0.1, 0.25, 0.3])
    for first, second in zip(unsure[1:], rejected[1:], strict=True):
        assert size(second, "x") == pytest.approx(size(first, "x") + size(first, "width"), abs=0.1)
    assert {"not sure", "not a digit", "50% + 25%", "10% + 30%"} <= set(texts(root))
    assert "v1 2 not sure and 1 not a digit of 4" in chart.summary


def test_correction_confusion_puts_predicted_down_and_correct_across():
    matrix = [[0] * 10 for _ in range(10)]
    matrix[0][9] = 11  # predicted 0, correct 9: top right
    matrix[9][0] = 22  # predicted 9, correct 0: bottom left
    matrix[4][7] = 33
    chart = charts.correction_confusion(matrix)
    root = parse(chart)
    found = {"".join(t.itertext()): (float(t.get("x")), float(t.get("y"))) for t in root.iter(f"{SVG}text")}
    assert {"Correct digit", "Predicted digit"} <= set(found)
    (x_top, y_top), (x_bottom, y_bottom) = found["11"], found["22"]
    assert x_top > x_bottom and y_top < y_bottom
    assert sum(text.isdigit() and int(text) >= 10 for text in texts(root)) == 3  # zeros are not written
    shades = {float(rect.get("fill-opacity", 1)) for rect in bars(root)}
    assert len(shades) == 3 and max(shades) == 1  # the largest count darkest
    assert "most often predicted 4 where the correct digit was 7 (33 times)" in chart.summary
    assert chart.rows == [("0", "9", "11"), ("4", "7", "33"), ("9", "0", "22")]


def test_correction_confusion_needs_a_ten_by_ten_matrix():
    with pytest.raises(ValueError, match="10x10"):
        charts.correction_confusion([[1, 2], [3, 4]])


def test_version_metrics_zooms_in_says_where_from_and_marks_missing_accuracy():
    chart = charts.version_metrics(["v1", "v2", "v3"], [0.975, None, 0.9921])
    root = parse(chart)
    drawn = bars(root)
    assert len(drawn) == 2
    assert {"v1", "v2", "v3", "n/a", "97.50%", "99.21%", "bars from 96% to 100%"} <= set(texts(root))
    assert_proportional([size(bar, "width") for bar in drawn], [0.975 - 0.96, 0.9921 - 0.96])
    assert "v2 not measured" in chart.summary


def test_labels_are_escaped():
    version = 'v1 "<b>&'
    chart = charts.version_metrics([version], [0.99])
    root = parse(chart)
    assert version in chart.summary and version in texts(root)
    assert "<b>" not in str(chart.svg)
