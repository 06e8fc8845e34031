"""digitsite settings: one module, everything deployment-specific from the environment.

Kept whole: one annotated module past 400 lines, as STYLE asks for settings (rule 5: one ``settings.py``
with sections): each value with its why, read top to bottom, and every variable a deployment
sets (``env(...)``) found in this one file.
"""

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from digitsite.brokers import FILESYSTEM_TRANSPORT, filesystem_broker_options

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env(
    DEBUG=(bool, False),
    ALLOWED_HOSTS=(list, ["localhost", "127.0.0.1", "[::1]", "testserver"]),
)
environ.Env.read_env(BASE_DIR / ".env")

# --- Core ---------------------------------------------------------------------------------
# PRODUCTION=true is a deployment behind HTTPS: it needs its own SECRET_KEY and ALLOWED_HOSTS
# and turns on the HTTPS-only settings below. Without it (make run, tests) a development key
# and local host names do.
PRODUCTION = env.bool("PRODUCTION", default=False)
DEBUG = env("DEBUG")
if PRODUCTION:
    SECRET_KEY = env("SECRET_KEY")
    # Django's own rule (check --deploy's W009), but refused rather than warned of: sessions,
    # password-reset links and CSRF tokens are signed with it.
    if SECRET_KEY.startswith("django-insecure-") or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured(
            "SECRET_KEY is the development key or too weak to sign sessions and password-reset links: "
            "it needs 50 or more random characters (at least 5 different ones). Make one with "
            'python -c "import secrets; print(secrets.token_urlsafe(50))".'
        )
    # The container's own health check asks http://127.0.0.1:8000/healthz.
    ALLOWED_HOSTS = [*env.list("ALLOWED_HOSTS"), "127.0.0.1", "localhost"]
else:
    SECRET_KEY = env("SECRET_KEY", default="django-insecure-dev-only-not-for-production")
    ALLOWED_HOSTS = env("ALLOWED_HOSTS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "csp",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "bootstrap",
    "crispy_forms",
    "crispy_bootstrap5",
    "django_htmx",
    "classifier",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a signed-in user unless its view says otherwise (login, sign-up).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # After messages (it leaves one), and before anything reads the body.
    "classifier.middleware.RequestSizeLimitMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it answers sign-ins made while locked out.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "digitsite.urls"
WSGI_APPLICATION = "digitsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "classifier.context_processors.workers",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
# SQLite needs no server for `make run`; deployments and CI set DATABASE_URL (PostgreSQL).
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Web and worker write at the same time: WAL lets readers and one writer work together,
    # and the timeout waits for a lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
    # A file, not memory: the integration tests' worker process must open the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / "test-db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # Not a check: revokes the API token whenever a password changes (see its docstring).
    {"NAME": "classifier.passwords.RevokeApiTokenOnPasswordChange"},
]

# --- Mail and password reset ------------------------------------------------------------------
# Password-reset mails go out through EMAIL_URL (e.g. smtp+tls://user:password@host:587) or an
# EMAIL_BACKEND. Without either, development prints them on the console; production turns
# password reset off instead, because a printed mail is a working reset link (staff ones too)
# in the web process's logs for anyone who reads them.
CONSOLE_EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
if env("EMAIL_URL", default=None):
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = env("EMAIL_BACKEND", default=None)
if PRODUCTION and EMAIL_BACKEND == CONSOLE_EMAIL_BACKEND:
    raise ImproperlyConfigured(
        "EMAIL_BACKEND is the console backend, which would print working password-reset links into "
        "the logs. Set EMAIL_URL (or EMAIL_BACKEND) to a real mail server, or leave both unset to "
        "turn password reset off."
    )
PASSWORD_RESET_ENABLED = EMAIL_BACKEND is not None or not PRODUCTION
if EMAIL_BACKEND is None:
    EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend" if PRODUCTION else CONSOLE_EMAIL_BACKEND
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="digitsite <noreply@localhost>")
# Reset requests per window, counted in the cache per client address and per e-mail address.
# Over either, the answer is the same page and no mail is sent.
PASSWORD_RESET_RATE_PER_ADDRESS = env.int("PASSWORD_RESET_RATE_PER_ADDRESS", default=5)
PASSWORD_RESET_RATE_PER_EMAIL = env.int("PASSWORD_RESET_RATE_PER_EMAIL", default=3)
PASSWORD_RESET_RATE_WINDOW_SECONDS = env.int("PASSWORD_RESET_RATE_WINDOW_SECONDS", default=3600)
# New accounts per client address per window, counted in the cache: each account has its own
# upload and API limits, so unlimited sign-ups would multiply them. Over it, the sign-up page
# answers 429 and says when to come back; nothing is created.
SIGNUP_RATE_PER_ADDRESS = env.int("SIGNUP_RATE_PER_ADDRESS", default=5)
SIGNUP_RATE_WINDOW_SECONDS = env.int("SIGNUP_RATE_WINDOW_SECONDS", default=3600)

# --- Client addresses ------------------------------------------------------------------------
# Every per-address limit (sign-in lockout, sign-ups, password resets) counts the address that
# classifier.addresses.client_address finds. Behind reverse proxies (nginx, a load balancer) set
# this to how many there are, each appending to X-Forwarded-For, or everyone shares the proxy's
# address (one client's wrong passwords then lock the owner out everywhere). 0 ignores the
# header: without a proxy of ours in front, anyone could write in it the address to blame.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# --- Sign-in protection (django-axes) -------------------------------------------------------
# Axes' backend comes first: it refuses a locked-out sign-in before the password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
# Username and address together: wrong passwords typed elsewhere cannot lock a person out.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "classifier.views.accounts.locked_out"
AXES_CLIENT_IP_CALLABLE = "classifier.addresses.client_address"
# Lockouts and failures are still logged; its banner and per-login lines are not needed.
AXES_VERBOSE = False

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "classifier:home"
LOGOUT_REDIRECT_URL = "login"

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Content-Security-Policy (django-csp) --------------------------------------------------------
# Scripts and style sheets come from this site only; the few inline ones (Swagger UI's page) carry
# the request's nonce, so injected markup runs nothing. Style *attributes* stay allowed: the
# confidence bars use them, and an attribute cannot run script.
# Images may be data: and blob: URLs (canvas drawings, Swagger UI's icons); the camera preview is
# a MediaStream, which needs no source.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:", "blob:"],
        "media-src": [SELF, "blob:"],
        "connect-src": [SELF],
        "font-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- Cache ------------------------------------------------------------------------------------
# API throttling counts requests here: set CACHE_URL (e.g. redis://127.0.0.1:6379/1) when more
# than one web process serves, so that they share the counts.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# --- REST API ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: a request without credentials then gets 401 with WWW-Authenticate, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 25,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"uploads": env("API_UPLOAD_RATE", default="30/minute")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "digitsite API",
    "DESCRIPTION": "Upload digit images, poll their classification, give feedback. "
    "Authenticate with `Authorization: Token <key>` (create a key on the site's API token page).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Like every page but log-in and sign-up: the schema and its documentation need a user
    # (a session or a token).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # The documentation page's JavaScript and CSS come from this server: it works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    # No badge from validator.swagger.io: the page asks nothing of other sites.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Static and media files ---------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# Serve static files straight from the apps and static/ too, so `make run` and the tests need
# no collectstatic; deployments still collect them into STATIC_ROOT.
WHITENOISE_USE_FINDERS = not PRODUCTION
# Uploads are served only through views that check ownership, so there is no MEDIA_URL.
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(BASE_DIR / "media")))
# Uploads live on the local disk unless AWS_STORAGE_BUCKET_NAME names an S3-compatible bucket
# (AWS S3, MinIO, Ceph...): then workers on other machines read the same files. Tasks carry
# image ids only; every read goes through the storage API.
AWS_STORAGE_BUCKET_NAME = env("AWS_STORAGE_BUCKET_NAME", default=None)
if AWS_STORAGE_BUCKET_NAME:
    UPLOAD_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": env("AWS_S3_ENDPOINT_URL", default=None),
            "region_name": env("AWS_S3_REGION_NAME", default=None),
            "default_acl": None,  # private: files are served through the ownership checks
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
else:
    UPLOAD_STORAGE = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": UPLOAD_STORAGE,
    # Production serves the collected, hashed and compressed files (long cache lifetimes).
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Uploads ------------------------------------------------------------------------------
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=10_000_000)
UPLOAD_MAX_FILES = env.int("UPLOAD_MAX_FILES", default=20)
# One request's whole body (all its files): refused before Django reads it. Twenty phone
# photos of 4-5 MB fit; a front proxy should allow the same (client_max_body_size in nginx).
UPLOAD_MAX_REQUEST_BYTES = env.int("UPLOAD_MAX_REQUEST_BYTES", default=100_000_000)
# ...and its pixels, counted from the headers: small files can hold huge images, and the
# worker decodes every pixel. Four images at the 64-megapixel limit, or twenty 12 MP photos.
UPLOAD_MAX_REQUEST_PIXELS = env.int("UPLOAD_MAX_REQUEST_PIXELS", default=256_000_000)
# Per user: at most this many stored images in any sliding window of this many seconds.
UPLOAD_RATE_LIMIT = env.int("UPLOAD_RATE_LIMIT", default=300)
UPLOAD_RATE_WINDOW_SECONDS = env.int("UPLOAD_RATE_WINDOW_SECONDS", default=3600)
# Above this, Django streams an upload to a temp file instead of holding it in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# --- Machine learning ---------------------------------------------------------------------
# Directory with the four MNIST IDX files; unset means the Keras download (needs internet).
MNIST_DATA_DIR = env("MNIST_DATA_DIR", default=None)
# Folders of real handwritten digits for choosing between models (`evaluate --real`), never for
# training: optdigits-30/ and hwd-1000/, each with labels.csv. Absent folders are left out.
REAL_DIGITS_DIR = Path(env("REAL_DIGITS_DIR", default=str(BASE_DIR.parent / "shared" / "data" / "real-digits")))
# The model we ship, trained by `manage.py train --arch deep` and committed with its metadata.
SHIPPED_MODEL_DIR = Path(env("SHIPPED_MODEL_DIR", default=str(BASE_DIR / "models" / "deep")))
# Where `train` writes when --out is not given.
TRAINED_MODELS_DIR = Path(env("TRAINED_MODELS_DIR", default=str(BASE_DIR / "var" / "models")))
# Where `retrain` keeps the model versions it makes (v2, v3, ...).
MODEL_VERSIONS_DIR = Path(env("MODEL_VERSIONS_DIR", default=str(BASE_DIR / "var" / "model-versions")))
# Each machine's own copies of the versions it serves, fetched from storage by checksum.
MODEL_CACHE_DIR = Path(env("MODEL_CACHE_DIR", default=str(BASE_DIR / "var" / "model-cache")))
# A version archive unpacks to at most this many bytes (the shipped bundle is under 4 MB)...
MODEL_ARCHIVE_MAX_BYTES = env.int("MODEL_ARCHIVE_MAX_BYTES", default=512_000_000)
# ...and at most this many members (the shipped version has 15 files): counted from the headers
# before anything is written, since many empty members cost time, not bytes.
MODEL_ARCHIVE_MAX_MEMBERS = env.int("MODEL_ARCHIVE_MAX_MEMBERS", default=1_000)
# A worker that could not load the active version serves the one it has and tries again after this.
MODEL_LOAD_RETRY_SECONDS = env.int("MODEL_LOAD_RETRY_SECONDS", default=60)

# --- Retraining ---------------------------------------------------------------------------
# Epochs over a retrain's mix: a fixed replay of MNIST (ml.fitting.retrain.REPLAY_DIGITS) plus the corrections.
RETRAIN_EPOCHS = env.int("RETRAIN_EPOCHS", default=2)
# A retrain asked for from the admin that has not finished after this long (its trainer died)
# no longer stops another from being asked for.
RETRAIN_STALE_AFTER_SECONDS = env.int("RETRAIN_STALE_AFTER_SECONDS", default=6 * 3600)
# The last line against a retrain that never ends (the stages are bounded by design: a retrain
# of the shipped model takes minutes): the task is told to stop at this limit and ends failed
# with the reason, and its pool process is killed TASK_HARD_LIMIT_GRACE_SECONDS later.
RETRAIN_TIME_LIMIT_SECONDS = env.float("RETRAIN_TIME_LIMIT_SECONDS", default=3 * 3600)
RETRAIN_SEED = 42
# A candidate may lose at most this much MNIST test accuracy (0.002 = 0.2 points).
RETRAIN_MAX_MNIST_DROP = env.float("RETRAIN_MAX_MNIST_DROP", default=0.002)
# From this many corrections on, a fifth is held out to judge the candidate; below it, a
# candidate is stored, never promoted on its own (it was judged only on what it trained on).
RETRAIN_MIN_FLAGS_FOR_HOLDOUT = 10
# The candidate and the active version both read the fixed judging sets (ml.fitting.judging: MNIST test,
# the real sets of REAL_DIGITS_DIR and scikit-learn, realistic uploads, non-digits, numbers),
# each but MNIST test at most this many images, drawn with a fixed seed: 75-95 s of a retrain
# on 2 busy cores for the shipped model (bench/judging.py; docs/performance.md). More images
# tell smaller differences apart, slower.
RETRAIN_JUDGING_PER_SET = env.int("RETRAIN_JUDGING_PER_SET", default=300)
# The judging sets, built once (20-25 s) and kept here for the retrains after (ml.fitting.judging);
# unset: retrain-cache/ beside MODEL_VERSIONS_DIR.
RETRAIN_CACHE_DIR = env("RETRAIN_CACHE_DIR", default=None)
# None: all 60,000 MNIST training images and all 10,000 test images. Tests set small numbers.
RETRAIN_TRAIN_LIMIT = env.int("RETRAIN_TRAIN_LIMIT", default=None)
RETRAIN_TEST_LIMIT = env.int("RETRAIN_TEST_LIMIT", default=None)
# A running stage's progress and time left are written at least this often, also where the
# stage itself reports no steps (the admin's page polls every 3 s; `retrain` prints every 10 s).
RETRAIN_PROGRESS_SECONDS = env.float("RETRAIN_PROGRESS_SECONDS", default=2.0)

# --- Classification -----------------------------------------------------------------------
# An upload's images are classified in batches of this many: one model call for each batch.
CLASSIFY_BATCH_SIZE = env.int("CLASSIFY_BATCH_SIZE", default=32)
# A task redelivered this many times (its worker died each time) fails the image instead.
CLASSIFY_MAX_ATTEMPTS = env.int("CLASSIFY_MAX_ATTEMPTS", default=3)
# Recovery queues an image again as soon as it is known to be stranded (never queued, or taken
# by a worker run that is gone: see selectors.images_stranded), and any image waiting this long
# since it was last queued, whatever the reason (a broker that lost its queue unnoticed).
CLASSIFY_STALE_AFTER_SECONDS = env.int("CLASSIFY_STALE_AFTER_SECONDS", default=120)
# An upload's rows commit before its publish: one with no queued_at this long after it was
# uploaded was never queued (the publish failed, or the web process died before it).
CLASSIFY_QUEUE_GRACE_SECONDS = env.int("CLASSIFY_QUEUE_GRACE_SECONDS", default=10)
# The last line against an upload whose reading never ends (reading is bounded by design: a
# batch takes well under a second, a request's 256 megapixels a few seconds; a fresh pool
# process loads the model first, seconds more): its images end failed with a sentence, and the
# process goes on to the next task. A classification or a live preview stopped at this limit.
CLASSIFY_TIME_LIMIT_SECONDS = env.float("CLASSIFY_TIME_LIMIT_SECONDS", default=60)
# A task that does not stop when told (stuck in native code) has its pool process killed this
# long after its soft limit: the worker starts a new one.
TASK_HARD_LIMIT_GRACE_SECONDS = 10
# How often beat queues requeue_stale (one query on the status index, cheap at any size);
# /healthz calls it overdue after three intervals.
REQUEUE_STALE_INTERVAL_SECONDS = env.int("REQUEUE_STALE_INTERVAL_SECONDS", default=10)

# --- The live answer while drawing ------------------------------------------------------------
# The draw page sends the canvas as the person draws; a worker reads it with the active model
# (the web process never loads TensorFlow). A 280x280 canvas PNG is 3-15 KB.
DRAW_PREVIEW_MAX_BYTES = 200_000
# A preview no worker has started by then is dropped: the person has drawn on since.
DRAW_PREVIEW_EXPIRES_SECONDS = 10
# Previews are deleted after this long (and when the same person sends the next one).
DRAW_PREVIEW_KEEP_SECONDS = 600
# Live answers per person per window (counted in the cache): the page sends at most one at a
# time, a few a second while drawing; past the limit it answers 429 and the panel says so.
DRAW_PREVIEW_RATE_PER_WINDOW = env.int("DRAW_PREVIEW_RATE_PER_WINDOW", default=60)
DRAW_PREVIEW_RATE_WINDOW_SECONDS = env.int("DRAW_PREVIEW_RATE_WINDOW_SECONDS", default=10)

# --- Celery -------------------------------------------------------------------------------
# Redis when CELERY_BROKER_URL is set; otherwise the embedded filesystem broker (no server).
# Each pool process loads and runs the model as it starts (the first upload then waits for
# nothing); celery kills a process that is not up within WORKER_PROC_ALIVE_TIMEOUT (4 s by
# default), and loading takes a few seconds on 2 cores: time enough for a slow disk.
WORKER_WARM_UP = env.bool("WORKER_WARM_UP", default=True)
CELERY_WORKER_PROC_ALIVE_TIMEOUT = 120
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem"):
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(
        env("CELERY_BROKER_FOLDER", default=str(BASE_DIR / "var" / "broker"))
    )
    # Kombu's transport, but one that recreates the folders should they be removed.
    CELERY_BROKER_TRANSPORT = FILESYSTEM_TRANSPORT
    # The filesystem transport has no broadcast: workers take no remote-control commands.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
else:
    # Redis keeps a message a worker took but never acknowledged (the whole worker was killed)
    # and gives it back after the visibility timeout (an hour by default). A classification
    # batch takes well under a second, and a few seconds at worst (a request's 256 megapixels),
    # so a minute is ample; its images were queued again long before, by their claim. Every
    # worker sweeps for such messages every 5 s (Kombu's default sweep is every 100 s). The
    # timeout covers every queue: retraining outlasts it, so its task is acknowledged as it
    # starts (classifier.tasks.retrain) and is never handed to a second trainer meanwhile.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT_SECONDS", default=60),
        "unacked_restore_interval": 5,
        "unacked_restore_throttle": 1,
    }
CELERY_TASK_IGNORE_RESULT = True
# Results live in the database (Prediction), not in a result backend.
CELERY_RESULT_BACKEND = None
# A task is acknowledged after it ran, so a worker that dies mid-task does not lose it...
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# ...and a worker holds only the task it works on, so the others stay with the broker.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# An upload must not hang when the broker is down: it stays pending and is queued later.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# ...and a worker that lost the broker tries again every few seconds, not up to 30 s apart.
CELERY_WORKER_CONSUMER = "digitsite.celery:Consumer"
# Prefork, whose idle pool processes hold no lock a kill would leave held (digitsite/celery.py).
CELERY_WORKER_POOL = "digitsite.celery:TaskPool"
CELERY_BEAT_SCHEDULE = {
    "requeue-stale-images": {"task": "classifier.requeue_stale", "schedule": float(REQUEUE_STALE_INTERVAL_SECONDS)},
}
# Celery's file-backed schedule, but beat creates the file's folder (a fresh clone has no var/).
CELERY_BEAT_SCHEDULER = "digitsite.celery:Scheduler"
# Three queues: classification; the draw page's live previews, on their own so that a backlog
# of uploads never makes them late (a late one is dropped); and retraining, so that a long
# retrain never holds up a prediction. `celery worker` without --queues takes only the first;
# see docs/deploy.md.
CELERY_TASK_DEFAULT_QUEUE = "classify"
CELERY_TASK_ROUTES = {
    "classifier.retrain": {"queue": "training"},
    "classifier.trainer_ping": {"queue": "training"},
    "classifier.preview_drawing": {"queue": "preview"},
}
# Every worker records that it is alive this often; /healthz counts the recent ones, and the
# images taken by a worker silent for three beats are queued again.
WORKER_HEARTBEAT_SECONDS = env.int("WORKER_HEARTBEAT_SECONDS", default=5)
CELERY_BEAT_SCHEDULE_FILENAME = str(BASE_DIR / "var" / "celerybeat-schedule")

# --- HTTPS (production) ---------------------------------------------------------------------
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # health checks speak plain HTTP from inside
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    # The proxy in front terminates TLS and must set this header itself (and drop the client's).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Logging ------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Standard output: containers and process managers collect it.
    "handlers": {"console": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}
