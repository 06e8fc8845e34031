"""A throwaway digitsite stack for the benchmarks: scratch database and media, gunicorn, a
Celery worker, a user with an API token. Redis when CELERY_BROKER_URL says so or when the
machine runs one on 127.0.0.1:6379 (database 9, emptied first); else the embedded broker."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import requests
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# MNIST_DATA_DIR, else the copy beside the checkout (CI, this workspace), else None: the Keras download.
SHARED_MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
MNIST_DIR = os.environ.get("MNIST_DATA_DIR") or (str(SHARED_MNIST_DIR) if SHARED_MNIST_DIR.is_dir() else None)
LOCAL_REDIS = "redis://127.0.0.1:6379/9"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def loads_tensorflow(pid: int) -> bool:
    try:
        return "libtensorflow" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def broker_url() -> str:
    configured = os.environ.get("CELERY_BROKER_URL", "")
    if configured.startswith("redis"):
        return configured
    try:
        import redis

        redis.Redis.from_url(LOCAL_REDIS, socket_connect_timeout=1).flushdb()
        return LOCAL_REDIS
    except Exception:
        return "filesystem://"


class Stack:
    """``with Stack() as stack:`` runs gunicorn and a worker until the block ends."""

    def __init__(
        self,
        *,
        web_workers: int = 2,
        concurrency: int = 2,
        database_url: str | None = None,
        broker: str | None = None,
        start: bool = True,
    ):
        self.scratch = Path(tempfile.mkdtemp(prefix="digitsite-bench-"))
        broker = broker or broker_url()
        self.env = (
            os.environ
            | {
                "DATABASE_URL": database_url or f"sqlite:///{self.scratch / 'db.sqlite3'}",
                "MEDIA_ROOT": str(self.scratch / "media"),
                "CELERY_BROKER_URL": broker,
                "CELERY_BROKER_FOLDER": str(self.scratch / "broker"),
                "UPLOAD_RATE_LIMIT": "1000000",  # limits are not what the benchmarks measure
                "API_UPLOAD_RATE": "1000000/minute",
                "TF_CPP_MIN_LOG_LEVEL": "3",
                "PYTHONUNBUFFERED": "1",
            }
            | ({"MNIST_DATA_DIR": MNIST_DIR} if MNIST_DIR else {})
        )
        self.web_workers, self.concurrency, self.start = web_workers, concurrency, start
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.web = self.worker = None

    def describe(self) -> str:
        database = self.env["DATABASE_URL"].split("://")[0]
        return f"database {database}, broker {self.env['CELERY_BROKER_URL'].split('://')[0]}, scratch {self.scratch}"

    def __enter__(self) -> Stack:
        os.environ.update(self.env)  # this process reads the same database through Django
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=self.env, check=True)
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "digitsite.settings")
        django.setup()
        from django.contrib.auth.models import User
        from rest_framework.authtoken.models import Token

        self.user = User.objects.create_user("bench", password="bench-password-42")
        self.token = Token.objects.create(user=self.user).key
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {self.token}"
        if self.start:
            try:
                self.start_web()
                self.start_worker()
            except BaseException:
                self.__exit__()  # a stack that did not come up leaves no process behind
                raise
        return self

    def start_web(self) -> None:
        command = [sys.executable, "-m", "gunicorn", "digitsite.wsgi", "-b", f"127.0.0.1:{self.port}"]
        self.web = self._spawn("web", [*command, "-w", str(self.web_workers)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.base}/api/schema/", timeout=10)
                return
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or a busy machine
                time.sleep(0.2)
        raise SystemExit("gunicorn did not come up")

    def start_worker(self, warm: bool = True, beat: bool = False) -> None:
        """A worker in its own process group (``kill_worker`` kills it whole); ``beat``: with
        its embedded beat, as ``make run`` starts it."""
        command = [sys.executable, "-m", "celery", "-A", "digitsite", "worker", "--pool", "prefork"]
        options = [
            "--queues",
            "classify,preview",
            "--concurrency",
            str(self.concurrency),
            "--loglevel",
            os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING"),
        ]
        options.append("--without-mingle")
        if beat:
            options += ["--beat", "--schedule", str(self.scratch / "celerybeat-schedule")]
        self.worker = self._spawn("worker", [*command, *options, "--without-gossip"], new_group=True)
        if warm:
            self.warm_up()

    def kill_worker(self) -> None:
        """SIGKILL the whole worker (parent, pool, beat), as an OOM killer or a crash would."""
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait()
        self.worker = None

    def warm_up(self) -> None:
        """One upload per worker process, so that no measurement pays for loading the model."""
        from classifier.models import DigitImage

        name, data, _ = mnist_uploads(1)[0]
        for _ in range(self.concurrency * 3):
            self.upload([(name, data)])
        self.wait_until_finished(timeout=120)
        DigitImage.objects.all().delete()

    def upload(self, files: list[tuple[str, bytes]]) -> requests.Response:
        parts = [("images", (name, data, "image/png")) for name, data in files]
        response = self.session.post(f"{self.base}/api/v1/images/", files=parts, timeout=60)
        if response.status_code != 202:
            raise SystemExit(f"upload failed: HTTP {response.status_code} {response.text[:300]}")
        return response

    def wait_until_finished(self, timeout: float = 600) -> float:
        from classifier.models import DigitImage

        started = time.monotonic()
        while DigitImage.objects.filter(status__in=["pending", "processing"]).exists():
            if time.monotonic() - started > timeout:
                raise SystemExit("timed out waiting for classification")
            if self.worker is not None and self.worker.poll() is not None:
                raise SystemExit(f"the worker died; see {self.scratch / 'worker.log'}")
            time.sleep(0.02)
        return time.monotonic() - started

    def memory(self) -> dict:
        worker_children = children(self.worker.pid) if self.worker else []
        web_children = children(self.web.pid) if self.web else []
        return {
            "worker_parent_mb": rss_mb(self.worker.pid) if self.worker else 0,
            "worker_child_mb": max((rss_mb(pid) for pid in worker_children), default=0),
            "web_mb": max((rss_mb(pid) for pid in web_children), default=0),
            "web_loads_tensorflow": any(loads_tensorflow(pid) for pid in web_children),
            "worker_loads_tensorflow": any(loads_tensorflow(pid) for pid in worker_children),
        }

    def _spawn(self, name: str, command: list[str], new_group: bool = False) -> subprocess.Popen:
        log = open(self.scratch / f"{name}.log", "a")  # noqa: SIM115 - open while the process runs
        return subprocess.Popen(
            command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=new_group
        )

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.terminate()
            self.worker.wait(timeout=60)
            self.worker = None

    def __exit__(self, *exc) -> None:
        for process in (self.web, self.worker):
            if process is not None:
                process.terminate()
        for process in (self.web, self.worker):
            if process is not None:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


def mnist_uploads(count: int) -> list[tuple[str, bytes, int]]:
    """MNIST test digits as dark-on-light PNG uploads: (name, bytes, label)."""
    from ml.fitting.data import load_mnist

    test = load_mnist(MNIST_DIR).test
    return [
        (f"d{i}.png", png(255 - test.images[i % len(test.images)]), int(test.labels[i % len(test.labels)]))
        for i in range(count)
    ]


def percentiles(samples, qs=(50, 95, 99)) -> list[float]:
    return [float(v) for v in np.percentile(samples, qs)]


class RedisServer:
    """A Redis of the benchmark's own on a free port, keeping nothing on disk, so that it can be
    stopped and started (empty, as after a restart that lost its queue)."""

    def __init__(self, folder: Path):
        self.port, self.folder, self.process = free_port(), folder, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(command, cwd=self.folder, stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        for _ in range(100):
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class ScratchPostgres:
    """A database created for the run and dropped after it, on the PostgreSQL server of
    ``url`` (a URL naming any database there): ``with ScratchPostgres(url) as scratch_url:``,
    or ``create()`` and ``drop()``."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.name = f"digitsite_bench_{os.getpid()}"
        self.admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
        self.url = urlunsplit(parts._replace(path=f"/{self.name}"))

    def _run(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.admin, autocommit=True) as connection:
            connection.execute(statement)

    def create(self) -> str:
        self._run(f'CREATE DATABASE "{self.name}"')
        return self.url

    def drop(self) -> None:
        from django.db import connections

        connections.close_all()
        self._run(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def __enter__(self) -> str:
        return self.create()

    def __exit__(self, *exc) -> None:
        self.drop()
