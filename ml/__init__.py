"""The digit models, with no Django, in two packages: ``ml.serving`` and ``ml.fitting``.

Serving (what a web process or a worker loads to read an upload) never imports fitting, not
even inside a function; fitting builds on serving (it measures what serving answers). The
folders are the rule: a new module goes in the package of the process that needs it. Tests
hold it (``ml/tests/test_artifacts.py``: by source and by what a fresh serving process loads;
``classifier/tests/test_web_process.py``: a web process and a classifying worker), and that no
imports go round in a loop (``classifier/tests/test_architecture.py``).
"""
