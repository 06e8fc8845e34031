"""Deployment: the compose file and Dockerfile agree with the code (Docker does not run here),
storage and queue settings, the health endpoint, workers' heartbeats."""

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands
from django.utils import timezone

from classifier.tests.conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = ["migrate", "web", "worker", "trainer", "beat", "flower"]
SETTINGS_SOURCE = (REPO / "digitsite" / "settings.py").read_text()
# Every variable the settings read: env("NAME", ...), env.int("NAME", ...), env.db("NAME") ...
SETTINGS_VARIABLES = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z_][A-Z0-9_]*)"', SETTINGS_SOURCE))
# Read by boto3 itself (django-storages' S3 storage), not by the settings.
BOTO_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_every_service_of_the_stack_is_there():
    assert set(SERVICES) == {"postgres", "redis", "minio", "minio-bucket", *APP_SERVICES}
    assert {"pgdata", "objects"} <= set(COMPOSE["volumes"])
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]


def test_web_workers_and_trainer_share_no_volume_only_the_services():
    """Uploads and model versions are in the bucket: no volume is mounted by two app services,
    so each can run on a machine of its own."""
    mounted = {}
    for name in APP_SERVICES:
        for volume in SERVICES[name].get("volumes", []):
            mounted.setdefault(volume.split(":")[0], []).append(name)
    assert all(len(users) == 1 for users in mounted.values()), mounted
    assert set(mounted) == {"trainer", "beat"}  # the trainer's MNIST and work space, beat's schedule file


def test_the_object_store_is_minio_on_a_profile_wired_to_the_bucket_settings():
    minio, bucket = SERVICES["minio"], SERVICES["minio-bucket"]
    assert minio["profiles"] == ["minio"] == bucket["profiles"]
    assert minio["image"].startswith("minio/minio") and "objects:/data" in minio["volumes"]
    assert "mc" in " ".join(minio["healthcheck"]["test"])
    assert bucket["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "mc mb --ignore-existing" in " ".join(bucket["command"])
    assert minio["environment"]["MINIO_ROOT_USER"] == "${AWS_ACCESS_KEY_ID:?set AWS_ACCESS_KEY_ID}"
    for name in APP_SERVICES:
        environment = SERVICES[name]["environment"]
        assert environment["AWS_S3_ENDPOINT_URL"] == "${AWS_S3_ENDPOINT_URL:-http://minio:9000}"
        assert environment["AWS_STORAGE_BUCKET_NAME"] == bucket["environment"]["AWS_STORAGE_BUCKET_NAME"]
        assert environment["AWS_ACCESS_KEY_ID"] == minio["environment"]["MINIO_ROOT_USER"]
        # Waits for the bucket where the profile runs MinIO, and not where a bucket of one's own is used.
        assert SERVICES[name]["depends_on"]["minio-bucket"] == {
            "condition": "service_completed_successfully",
            "required": False,
        }


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_run_our_image_with_settings_the_code_reads(name):
    service = SERVICES[name]
    assert service["build"] == "."
    unknown = set(service["environment"]) - SETTINGS_VARIABLES - BOTO_VARIABLES
    assert not unknown, f"{name} sets variables that digitsite/settings.py never reads: {unknown}"
    environment = service["environment"]
    assert environment["PRODUCTION"] == "true"
    assert environment["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in environment["DATABASE_URL"]
    assert environment["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
    assert environment["CACHE_URL"].startswith("redis://redis:6379/")
    assert environment["CELERY_BROKER_URL"] != environment["CACHE_URL"]
    assert "MEDIA_ROOT" not in environment  # uploads go to the bucket
    for dependency, condition in service["depends_on"].items():
        assert dependency in SERVICES
        if condition["condition"] == "service_healthy":
            assert "healthcheck" in SERVICES[dependency], f"{name} waits for {dependency}'s health, which has no check"


def test_commands_name_real_things():
    from digitsite.celery import app

    assert SERVICES["migrate"]["command"][:3] == ["python", "manage.py", "migrate"]
    assert "migrate" in get_commands()
    web = SERVICES["web"]["command"]
    assert web[0] == "gunicorn" and web[1] == "digitsite.wsgi"
    assert (REPO / "digitsite" / "wsgi.py").is_file()
    for name in ("web", "worker", "trainer", "beat"):
        if name != "web":
            assert SERVICES[name]["command"][:3] == ["celery", "-A", "digitsite"]
        assert SERVICES[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # Each queue the code routes to has a consumer, and the consumers take no queue nobody sends to.
    routed = {app.conf.task_default_queue} | {route["queue"] for route in app.conf.task_routes.values()}
    consumed = set()
    for name in ("worker", "trainer"):
        command = SERVICES[name]["command"]
        consumed |= set(command[command.index("--queues") + 1].split(","))
    assert consumed == routed == {"classify", "preview", "training"}
    assert SERVICES["beat"]["command"][3] == "beat"
    flower = " ".join(SERVICES["flower"]["command"])
    assert "flower" in flower and "--basic-auth=${FLOWER_USER" in flower  # behind a password


def test_healthchecks_ask_the_right_things():
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])
    assert SERVICES["redis"]["healthcheck"]["test"][-1] == "ping"
    assert "/healthz" in " ".join(SERVICES["web"]["healthcheck"]["test"])
    for name in ("worker", "trainer"):
        assert "inspect ping" in " ".join(SERVICES[name]["healthcheck"]["test"])


def test_the_dockerfile_builds_what_compose_runs():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", dockerfile, re.M)
    assert "pip install -r requirements.txt" in dockerfile
    assert re.search(r"PRODUCTION=true .*manage\.py collectstatic --noinput", dockerfile), (
        "collect as production serves"
    )
    assert re.search(r"^USER \w+", dockerfile, re.M), "the app must not run as root"
    for package in ("gunicorn", "celery", "flower", "django-storages", "psycopg"):
        assert package in (REPO / "requirements.txt").read_text()
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".git", "var", "media"} <= set(ignored)


def _settings_in_a_fresh_process(code: str, **env) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | env
    environment["DJANGO_SETTINGS_MODULE"] = "digitsite.settings"
    script = f"import django; django.setup(); from django.conf import settings; {code}"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_uploads_go_to_an_s3_bucket_when_one_is_named():
    storage = 'from django.core.files.storage import storages; s = storages["default"]; print(type(s).__name__'
    assert _settings_in_a_fresh_process(storage + ")") == "FileSystemStorage"
    named = _settings_in_a_fresh_process(
        storage + ", s.bucket_name, s.endpoint_url)",
        AWS_STORAGE_BUCKET_NAME="digits",
        AWS_S3_ENDPOINT_URL="http://minio:9000",
    )
    assert named == "S3Storage digits http://minio:9000"


@pytest.mark.django_db
def test_uploads_and_classification_need_no_local_file(client, settings, mnist, tmp_path):
    """Everything reads files through the storage API: a storage with no local path works."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    from classifier.models import DigitImage
    from classifier.services import prediction_run
    from classifier.tests.factories import UserFactory
    from ml.tests.conftest import encode

    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}
    settings.MEDIA_ROOT = tmp_path / "must-stay-empty"
    user = UserFactory()
    client.force_login(user)
    png = encode(255 - mnist.test.images[0])
    client.post(reverse("classifier:home"), {"images": [SimpleUploadedFile("seven.png", png)]})
    image = DigitImage.objects.get(owner=user)
    assert prediction_run(image_id=image.pk).digit == 7
    served = client.get(reverse("classifier:image_file", args=[image.pk]))
    assert b"".join(served.streaming_content) == png
    assert not settings.MEDIA_ROOT.exists()


def test_tasks_go_to_their_queues():
    from digitsite.celery import app

    router = app.amqp.router
    for task in ("classifier.classify_images", "classifier.classify_image", "classifier.requeue_stale"):
        assert router.route({}, task)["queue"].name == "classify"
    assert router.route({}, "classifier.retrain")["queue"].name == "training"


@pytest.mark.django_db
def test_retrain_can_be_queued_for_the_training_workers(broker_env, tmp_path, django_capture_on_commit_callbacks):
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    from classifier.models import RetrainRun

    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("retrain", "--background", stdout=out)
    assert out.getvalue().startswith("queued on the training queue as retrain run ")
    run = RetrainRun.objects.get()
    assert (run.status, run.in_progress) == (RetrainRun.Status.QUEUED, True)
    with pytest.raises(CommandError, match="already queued"):  # one at a time
        call_command("retrain", "--background", stdout=StringIO())
    if os.environ["CELERY_BROKER_URL"].startswith("redis"):
        import redis

        from classifier.tests.conftest import REDIS_URL

        assert redis.Redis.from_url(REDIS_URL).llen("training") == 1
    else:
        queued = list(Path(broker_env["CELERY_BROKER_FOLDER"], "queue").glob("*.training.msg"))
        assert len(queued) == 1


@pytest.mark.django_db
def test_healthz_reports_database_broker_and_workers(client, admin_client, settings):
    from classifier.models import WorkerHeartbeat

    assert client.get("/healthz").json() == {"status": "degraded"}  # the reasons are for staff only
    body = admin_client.get("/healthz").json()
    assert body == {
        "status": "degraded",
        "database": "ok",
        "broker": "ok",
        "workers": {"alive": 0, "hosts": []},
        "requeue_stale": {"last_run_seconds_ago": None, "requeued": None, "overdue": False},
        "model": {"version": 1, "status": "ok"},
        "trainer": {"status": "no answer yet", "hostname": None, "answered_seconds_ago": None},
    }
    now = timezone.now()
    WorkerHeartbeat.objects.create(hostname="celery@a", seen_at=now, started_at=now)
    stale = now - timedelta(seconds=10 * settings.WORKER_HEARTBEAT_SECONDS)
    WorkerHeartbeat.objects.create(hostname="celery@gone", seen_at=stale, started_at=stale)
    response = admin_client.get("/healthz")
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["status"] == "ok" and body["workers"]["alive"] == 1
    assert body["workers"]["hosts"][0]["hostname"] == "celery@a"


@pytest.mark.django_db
def test_healthz_is_degraded_when_beat_has_not_run_requeue_stale_lately(admin_client, settings):
    from classifier.models import RequeueRun, WorkerHeartbeat
    from classifier.queueing import requeue_run_record

    now = timezone.now()
    overdue = now - timedelta(seconds=3 * settings.REQUEUE_STALE_INTERVAL_SECONDS + 5)
    worker = WorkerHeartbeat.objects.create(hostname="celery@a", seen_at=now, started_at=now)
    body = admin_client.get("/healthz").json()
    assert body["status"] == "ok"  # a worker just started: beat's first run is not due yet
    assert body["requeue_stale"] == {"last_run_seconds_ago": None, "requeued": None, "overdue": False}
    worker.started_at = overdue
    worker.save()
    body = admin_client.get("/healthz").json()
    assert body["status"] == "degraded" and body["requeue_stale"]["overdue"] is True  # beat never ran
    requeue_run_record(requeued=4)
    body = admin_client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["requeue_stale"]["requeued"] == 4 and body["requeue_stale"]["last_run_seconds_ago"] < 5
    RequeueRun.objects.update(ran_at=overdue)
    body = admin_client.get("/healthz").json()
    assert body["status"] == "degraded" and body["requeue_stale"]["overdue"] is True  # beat stopped
    WorkerHeartbeat.objects.all().delete()
    body = admin_client.get("/healthz").json()
    assert body["requeue_stale"]["overdue"] is False  # without workers nothing would run it anyway


@pytest.mark.django_db
def test_requeue_stale_records_its_run(broker_env):
    from classifier.models import RequeueRun
    from classifier.tasks import requeue_stale

    assert requeue_stale() == 0
    requeue_stale()
    run = RequeueRun.objects.get()
    assert run.requeued == 0 and (timezone.now() - run.ran_at).total_seconds() < 5


@pytest.mark.django_db
def test_healthz_answers_503_when_the_broker_is_down(admin_client, tmp_path):
    from classifier.tests.conftest import broker_down

    with broker_down():
        response = admin_client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down" and body["database"] == "ok" and body["broker"].startswith("unreachable")


def test_the_containers_health_check_gets_an_answer_under_production_settings(tmp_path):
    """Plain HTTP from 127.0.0.1 inside the container: no HTTPS redirect, no bad-host 400."""
    answer = _settings_in_a_fresh_process(
        "from django.test import Client; r = Client().get('/healthz', HTTP_HOST='127.0.0.1:8000'); "
        "print(r.status_code, r.json()['status'])",
        PRODUCTION="true",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="digits.example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CELERY_BROKER_URL="filesystem://",
        CELERY_BROKER_FOLDER=str(tmp_path / "broker"),
    )
    assert answer == "200 degraded"  # database and broker answer; no worker runs here


@pytest.mark.slow
def test_pages_render_with_the_static_files_production_collects(tmp_path):
    """The image collects hashed files; a page under PRODUCTION finds each in the manifest."""
    env = {
        "PRODUCTION": "true",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "digits.example.com",
        "STATIC_ROOT": str(tmp_path / "static"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | env
    for command in (["collectstatic", "--noinput", "-v0"], ["migrate", "-v0"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=REPO, env=environment, check=True, timeout=300)
    page = _settings_in_a_fresh_process(
        "from django.test import Client; r = Client().get('/accounts/login/', secure=True, "
        "HTTP_HOST='digits.example.com'); print(r.status_code, 'bootstrap.min.' in r.content.decode())",
        **env,
    )
    assert page == "200 True"
    assert list((tmp_path / "static" / "css").glob("site.*.css"))  # hashed names


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_slow_clients_do_not_hold_up_the_web_process(tmp_path):
    """Clients that send half a request and wait (slowloris) must not take every gunicorn
    worker: /healthz answers at once beside them. gunicorn runs as the Dockerfile runs it, with
    two processes; with sync workers two such sockets hold both."""
    command = json.loads(re.search(r"^CMD (\[.*\])$", (REPO / "Dockerfile").read_text(), re.M).group(1))
    assert command[:2] == ["gunicorn", "digitsite.wsgi"]
    assert command == SERVICES["web"]["command"], "compose runs the web process as the Dockerfile does"
    port = _free_port()
    command[command.index("--workers") + 1] = "2"
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")} | {
        "PRODUCTION": "true",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "digits.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_BROKER_FOLDER": str(tmp_path / "broker"),
    }
    url = f"http://127.0.0.1:{port}/healthz"
    with open(tmp_path / "gunicorn.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", *command], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    slow = []
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn never answered"
                time.sleep(0.3)
        for _ in range(4):  # twice the worker processes
            client = socket.create_connection(("127.0.0.1", port))
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            slow.append(client)
        time.sleep(1)  # gunicorn has taken them and waits for the rest of their headers
        started = time.monotonic()
        with urllib.request.urlopen(url, timeout=10) as response:
            assert json.load(response)["status"] == "degraded"  # it answers: database and broker up, no worker
        assert time.monotonic() - started < 2
    finally:
        for client in slow:
            client.close()
        server.terminate()
        server.wait(timeout=30)
