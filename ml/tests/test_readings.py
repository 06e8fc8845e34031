"""The reading modes, declared once: the names the worker reads by and the sentences people see."""

from ml.serving.readings import AUTO, MODES, READINGS, readings_described, readings_named


def test_the_modes_are_auto_digit_and_number_with_auto_first():
    assert READINGS == ("auto", "digit", "number") == tuple(mode.name for mode in MODES)
    assert READINGS[0] == AUTO


def test_the_sentences_name_every_mode_as_the_api_and_the_command_say_them():
    assert readings_named() == "auto, digit or number"
    assert readings_named(asides={AUTO: "left to the site"}) == "auto (left to the site), digit or number"
    assert readings_described() == (
        "auto (each read as one digit unless it clearly holds several), digit (one digit each) "
        "or number (a number each)"
    )
