"""Short functions, and long modules only where their docstring says why (``classifier/tests/sizes.py``)."""

from classifier.tests.sizes import (
    FUNCTION_LINES,
    FUNCTION_MAX,
    KEPT_WHOLE,
    LONG_FUNCTIONS_ALLOWED,
    long_functions,
    long_modules,
)


def test_no_function_is_over_the_limit_and_few_are_long():
    assert [name for lines, name in long_functions() if lines > FUNCTION_MAX] == []
    assert len(long_functions(FUNCTION_LINES)) <= LONG_FUNCTIONS_ALLOWED, long_functions(FUNCTION_LINES)


def test_a_long_module_says_why_it_stays_whole():
    assert [name for _, name, said in long_modules() if not said] == [], f"split it, or say {KEPT_WHOLE!r} why"


def test_the_report_finds_a_long_function(tmp_path, monkeypatch):
    from classifier.tests import sizes

    body = "\n".join(f"    x{i} = {i}" for i in range(70))
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "long.py").write_text(f'"""A module."""\n\n\ndef long():\n{body}\n')
    monkeypatch.setattr(sizes, "REPO", tmp_path)
    assert sizes.long_functions() == [(71, "ml/long.py:long")]
    assert sizes.long_modules(limit=10) == [(74, "ml/long.py", False)]
