"""The trainer as the end-to-end tests start it: a real `celery worker` taking the training
queue only, as `make run` and compose run it apart from the classifying worker."""

from __future__ import annotations

from pathlib import Path

from classifier.tests.conftest import Worker

TRAINER = "trainer@test"


def trainer_start(worker_env: dict, tmp_path: Path, **settings: str) -> Worker:
    """A trainer started on this test's database, broker and files: no warm start (it reads no
    uploads), its versions under ``tmp_path``, judging on 20 images a set so that a retrain
    takes a minute or two, and ``settings`` (the environment's ``RETRAIN_*``...) beside."""
    return Worker(
        worker_env
        | {
            "WORKER_WARM_UP": "false",
            "RETRAIN_JUDGING_PER_SET": "20",
            "MODEL_VERSIONS_DIR": str(tmp_path / "trainer-versions"),
        }
        | settings,
        tmp_path / "trainer.log",
        args=("--hostname", TRAINER),
        queues="training",
    ).start()
