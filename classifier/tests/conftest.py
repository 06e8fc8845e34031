import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import kombu.pools
import pytest
import redis
from django.db import connection

from digitsite.brokers import filesystem_broker_options
from digitsite.celery import app as celery_app
from ml.tests.conftest import SHIPPED_MODEL_DIR, mnist, mnist_dir, tiny_model_dir  # noqa: F401


@pytest.fixture(autouse=True)
def _isolated_files(settings, tmp_path):
    """Uploads and trained models go to a temp dir; MNIST comes from the shared copy."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TRAINED_MODELS_DIR = tmp_path / "models"
    settings.MNIST_DATA_DIR = str(mnist_dir())
    settings.SHIPPED_MODEL_DIR = SHIPPED_MODEL_DIR


# --- A real Celery worker process -----------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = (
    os.environ["CELERY_BROKER_URL"]
    if os.environ.get("CELERY_BROKER_URL", "").startswith("redis")
    else "redis://127.0.0.1:6379/15"
)


def redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def require_redis() -> None:
    if not redis_up():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is not reachable at {REDIS_URL}; CI must provide it")
        pytest.skip("Redis is not running here")


def use_broker(url: str, options: dict) -> None:
    """Point this (web) process's Celery app at another broker."""
    # Celery reads CELERY_BROKER_URL from the environment before its own configuration.
    os.environ["CELERY_BROKER_URL"] = url
    celery_app.conf.broker_url = url
    celery_app.conf.broker_transport_options = options
    kombu.pools.reset()  # kombu's process-wide connection and producer pools
    celery_app._after_fork()  # and the app's own references to them


@contextmanager
def broker(kind: str, folder: Path):
    """Web process and worker on one broker: ``embedded`` (files in ``folder``) or ``redis``."""
    if kind == "redis":
        require_redis()
        redis.Redis.from_url(REDIS_URL).flushdb()
        url, options, env = REDIS_URL, {}, {"CELERY_BROKER_URL": REDIS_URL}
    else:
        url, options = "filesystem://", filesystem_broker_options(folder)
        env = {"CELERY_BROKER_URL": url, "CELERY_BROKER_FOLDER": str(folder)}
    saved_env = os.environ.get("CELERY_BROKER_URL")
    saved = celery_app.conf.broker_url, celery_app.conf.broker_transport_options
    use_broker(url, options)
    try:
        yield env
    finally:
        use_broker(*saved)
        if saved_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)


@pytest.fixture
def broker_env(tmp_path_factory):
    """The broker this environment configures: Redis when CELERY_BROKER_URL says so (CI)."""
    kind = "redis" if os.environ.get("CELERY_BROKER_URL", "").startswith("redis") else "embedded"
    with broker(kind, tmp_path_factory.mktemp("broker")) as env:
        yield env


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    return f"postgres://{user}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@pytest.fixture
def worker(broker_env, settings, tmp_path):
    """A real `celery worker` process sharing the test database and media folder."""
    media = tmp_path / "shared-media"
    settings.MEDIA_ROOT = media
    env = (
        os.environ
        | broker_env
        | {
            "DATABASE_URL": _database_url(),
            "MEDIA_ROOT": str(media),
            "MNIST_DATA_DIR": str(settings.MNIST_DATA_DIR),
            "SHIPPED_MODEL_DIR": str(settings.SHIPPED_MODEL_DIR),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
    )
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "digitsite",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                "1",
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process.log_path = log_path
        yield process
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
