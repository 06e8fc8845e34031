import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import kombu.pools
import pytest
import redis
from django.db import connection

from bench.stack import RedisServer
from classifier.tests.factories import UserFactory
from digitsite.brokers import FILESYSTEM_TRANSPORT, filesystem_broker_options
from digitsite.celery import app as celery_app
from ml.tests.conftest import (  # noqa: F401
    SHIPPED_MODEL_DIR,
    encode,
    mnist,
    mnist_dir,
    tiny_model_dir,
    tiny_rejecting_model_dir,
)

# What `make test-fast` leaves out, whatever a test's own marks say: a real worker process,
# a Redis server of its own or a browser.
SLOW_FIXTURES = {"worker", "worker_env", "redis_server", "live_server", "browser", "page"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) and "slow" not in item.keywords:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _isolated_files(settings, tmp_path):
    """Uploads and trained models go to a temp dir; MNIST comes from where the `mnist` fixture finds it."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TRAINED_MODELS_DIR = tmp_path / "models"
    settings.MODEL_CACHE_DIR = tmp_path / "model-cache"
    settings.MODEL_VERSIONS_DIR = tmp_path / "model-versions"
    # The judging sets are keyed by what they are made of: every test and process may share them.
    settings.RETRAIN_CACHE_DIR = settings.RETRAIN_CACHE_DIR or str(REPO / "var" / "retrain-cache")
    directory = mnist_dir()
    settings.MNIST_DATA_DIR = str(directory) if directory else None
    settings.SHIPPED_MODEL_DIR = SHIPPED_MODEL_DIR
    # Passwords made and checked in this process take a fast hash (the site's own, PBKDF2, is
    # slow on purpose: a few hundred milliseconds a user here); a live server or a worker
    # started by a test keeps the real one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    from django.core.cache import cache

    cache.clear()  # rate-limit counts (sign-ups, resets) start from nothing in each test


# --- A real Celery worker process -----------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def _redis_url_of_this_process(url: str) -> str:
    """``url`` for one test process, another database for each of pytest-xdist's (gw0, gw1...):
    ``broker`` empties it, and a worker must never take another process's tasks. Up from CI's
    0, down from the local default's 15, so that the two meet only past 8 processes each."""
    number = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    index = base + number if base + number < 16 else base - number
    return urlunsplit(parts._replace(path=f"/{index % 16}"))


REDIS_URL = _redis_url_of_this_process(
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
    celery_app.conf.broker_transport = FILESYSTEM_TRANSPORT if url.startswith("filesystem") else None
    celery_app.conf.broker_transport_options = options
    kombu.pools.reset()  # kombu's process-wide connection and producer pools
    celery_app._after_fork()  # and the app's own references to them


if os.environ.get("CELERY_BROKER_URL", "").startswith("redis"):
    use_broker(REDIS_URL, {})  # under pytest-xdist, this process's own database


@contextmanager
def broker_down():
    """This (web) process's broker unreachable: nothing listens on port 9."""
    saved_env = os.environ.get("CELERY_BROKER_URL")
    saved = celery_app.conf.broker_url, celery_app.conf.broker_transport_options
    use_broker("redis://127.0.0.1:9/0", {})
    try:
        yield
    finally:
        use_broker(*saved)
        if saved_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = saved_env


@pytest.fixture
def redis_server(tmp_path):
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed; CI must provide it")
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@contextmanager
def broker(kind: str, folder: Path, redis_url: str = REDIS_URL):
    """Web process and worker on one broker: ``embedded`` (files in ``folder``) or ``redis``."""
    if kind == "redis":
        if redis_url == REDIS_URL:
            require_redis()
        redis.Redis.from_url(redis_url).flushdb()
        url, options, env = redis_url, {}, {"CELERY_BROKER_URL": redis_url}
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


def wait_until_finished(ids, worker, timeout=120.0) -> None:
    """Wait until every image is done or failed; fail at once if the worker process died."""
    from classifier.models import DigitImage

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        unfinished = DigitImage.objects.filter(pk__in=ids).exclude(
            status__in=[DigitImage.Status.DONE, DigitImage.Status.FAILED]
        )
        if not unfinished.exists():
            return
        assert worker.poll() is None, f"the worker process died; see {worker.log_path}"
        time.sleep(0.3)
    states = list(DigitImage.objects.filter(pk__in=ids).values_list("pk", "status"))
    raise AssertionError(f"images not classified within {timeout}s: {states}")


class Worker:
    """A real `celery worker` process (prefork, one child) on the test database and broker,
    taking the queues the site's own worker takes (classification and the draw page's live
    answer); ``args`` adds options (``--beat``...)."""

    def __init__(
        self, env: dict, log_path: Path, args: tuple[str, ...] = (), queues: str = "classify,preview", cwd: Path = REPO
    ):
        self.env, self.log_path, self.args, self.queues, self.cwd, self.process = env, log_path, args, queues, cwd, None

    def start(self) -> "Worker":
        log = open(self.log_path, "a")  # noqa: SIM115 - the worker writes to it until stopped
        self.process = subprocess.Popen(
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
                "--queues",
                self.queues,
                *self.args,
            ],
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so that it can be killed whole
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self):
        return self.process.poll()

    def children(self) -> list[int]:
        """The pool's child processes (the ones that run tasks)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.pid:
                found.append(int(stat.parent.name))
        return found

    def kill_all(self) -> None:
        """SIGKILL the whole worker, parent and children, as an OOM killer or a crash would."""
        os.killpg(self.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)  # warm shutdown: the parent stops its children
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def worker_env(broker_env, settings, tmp_path) -> dict:
    """The environment of a worker process that shares this test's database and files."""
    media = tmp_path / "shared-media"
    settings.MEDIA_ROOT = media
    return (
        os.environ
        | broker_env
        | {
            "DATABASE_URL": _database_url(),
            "MEDIA_ROOT": str(media),
            "MODEL_CACHE_DIR": str(tmp_path / "worker-model-cache"),  # its own, as on another machine
            "SHIPPED_MODEL_DIR": str(settings.SHIPPED_MODEL_DIR),
            "RETRAIN_CACHE_DIR": str(settings.RETRAIN_CACHE_DIR),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        # Without a directory the worker takes the Keras download, as this process does.
        | ({"MNIST_DATA_DIR": settings.MNIST_DATA_DIR} if settings.MNIST_DATA_DIR else {})
    )


@pytest.fixture
def worker(worker_env, tmp_path):
    """A real `celery worker` process, started for the test and stopped after it."""
    process = Worker(worker_env, tmp_path / "worker.log").start()
    yield process
    process.stop()


@pytest.fixture
def user():
    return UserFactory()


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def png(mnist):  # noqa: F811 (the fixture imported above)
    """A clean MNIST test digit (a 7), dark ink on white, as a PNG upload."""
    return encode(255 - mnist.test.images[0])
