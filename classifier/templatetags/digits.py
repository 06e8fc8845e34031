"""How figures are shown: a probability, the same on the card, the detail page, its bars and
history, and a duration on the retrain status."""

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


@register.filter
def duration(seconds) -> str:
    """Seconds as people read a stopwatch: "45 s", "3 min 05 s", "1 h 02 min"."""
    if seconds is None:
        return ""
    whole = round(float(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
