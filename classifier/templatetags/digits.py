"""How a probability is shown, the same on the card, the detail page, its bars and history."""

from django import template

register = template.Library()


@register.filter
def percent(probability) -> str:
    """A probability for people: whole percents, one decimal from 99% up, never "100%" for
    what is not certain and never "0%" for what is possible (0.9987 -> "99.9%", 0.99996 ->
    "99.9%", 1.0 -> "100%", 0.873 -> "87%", 0.004 -> "<1%", 0.0 -> "0%")."""
    if probability in (None, ""):
        return ""
    p = float(probability)
    if p >= 1.0:
        return "100%"
    if p <= 0.0:
        return "0%"
    if p >= 0.99:
        return f"{min(round(100 * p, 1), 99.9):.1f}%"
    if p < 0.005:
        return "<1%"
    return f"{round(100 * p):.0f}%"
