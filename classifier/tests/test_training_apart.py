"""Classifying never waits for training (issue 34): under `make run` the Procfile starts a
trainer of its own, apart from the worker that classifies. That an upload made while a retrain
runs is answered within seconds is proven in a browser, on workers taking these queues:
``test_browser.py::test_people_and_staff_say_not_a_digit_and_a_retrain_teaches_it_while_uploads_are_answered``."""

import re

from classifier.tests.conftest import REPO


def _procfile_queues() -> dict[str, str]:
    lines = (REPO / "Procfile").read_text().splitlines()
    return {line.split(":", 1)[0]: re.search(r"--queues (\S+)", line).group(1) for line in lines if "--queues" in line}


def test_the_procfile_keeps_training_apart_from_classifying():
    queues = _procfile_queues()
    assert "training" not in queues["worker"].split(",") and set(queues["worker"].split(",")) == {"classify", "preview"}
    assert queues["trainer"] == "training"
    trainer = next(line for line in (REPO / "Procfile").read_text().splitlines() if line.startswith("trainer:"))
    assert "WORKER_WARM_UP=false" in trainer and "--hostname trainer@" in trainer
