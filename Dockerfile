# digitsite: one image for the web process, the Celery workers, beat and flower.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /app
COPY requirements.txt .
RUN pip install --upgrade pip && pip install -r requirements.txt

COPY . .
# Static files are collected into the image (hashed and compressed, as PRODUCTION serves them)
# and served by whitenoise; collecting needs no database, and a throwaway key made here (production
# settings refuse a weak one) that the image never keeps.
RUN PRODUCTION=true SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" ALLOWED_HOSTS=build python manage.py collectstatic --noinput \
    && useradd --create-home --uid 1000 digitsite \
    && mkdir -p /data/media && chown -R digitsite /data /app

USER digitsite
EXPOSE 8000
# Threads (gthread), not sync workers: a client sending its request slowly holds one thread,
# not a whole process, so a few slow or malicious sockets cannot stall /healthz (docs/deploy.md).
CMD ["gunicorn", "digitsite.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--worker-class", "gthread", "--threads", "8", "--access-logfile", "-"]
