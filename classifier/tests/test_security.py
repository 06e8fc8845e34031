"""Sign-in lockout, upload limits per request and per user, and production settings."""

import os
import secrets
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from classifier.models import DigitImage
from classifier.tests.conftest import REPO
from classifier.tests.factories import DigitImageFactory, UserFactory
from ml.tests.conftest import encode

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple"


@pytest.fixture
def png(mnist):
    return encode(255 - mnist.test.images[0])


def sign_in(client, username, password, address="10.0.0.1"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address)


def test_five_wrong_passwords_lock_the_account_from_that_address(client, settings):
    user = UserFactory()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = sign_in(client, user.username, "wrong")
        assert (
            response.status_code == 200 and "Please enter a correct username and password" in response.content.decode()
        )
    response = sign_in(client, user.username, "wrong")
    assert response.status_code == 429
    # Locked now: even the right password is refused, with a message that says what to do.
    response = sign_in(client, user.username, PASSWORD)
    assert response.status_code == 429
    text = response.content.decode()
    assert "Too many failed sign-ins" in text
    assert f"After {settings.AXES_FAILURE_LIMIT} wrong passwords" in text and "paused for 15 minutes" in text
    assert "_auth_user_id" not in client.session

    # The same person from another address is not locked out by those failures.
    response = sign_in(client, user.username, PASSWORD, address="10.0.0.2")
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(user.pk)


def test_wrong_old_passwords_on_the_password_change_form_count_like_failed_sign_ins(client, settings):
    """A session left open is not a licence to guess the password: the change form's wrong old
    passwords are counted by django-axes, and past the limit the form refuses even the right
    one (and signing in from that address is paused too)."""
    user = UserFactory()
    client.force_login(user)
    new = "a brand new passphrase 4711"

    def change(old):
        fields = {"old_password": old, "new_password1": new, "new_password2": new}
        return client.post(reverse("password_change"), fields, REMOTE_ADDR="10.0.0.1")

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = change("wrong")
        assert response.status_code == 200 and "Your old password was entered incorrectly" in response.content.decode()
    assert change("wrong").status_code == 429
    response = change(PASSWORD)
    assert response.status_code == 429
    text = response.content.decode()
    assert "Too many wrong passwords" in text and "changing your password" in text and "paused for 15 minutes" in text
    user.refresh_from_db()
    assert user.check_password(PASSWORD) and not user.check_password(new)
    client.logout()
    assert sign_in(client, user.username, PASSWORD).status_code == 429


def test_the_password_change_form_still_changes_the_password(client):
    user = UserFactory()
    client.force_login(user)
    new = "a brand new passphrase 4711"
    fields = {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    response = client.post(reverse("password_change"), fields, REMOTE_ADDR="10.0.0.1")
    assert response.status_code == 302 and response["Location"] == reverse("password_change_done")
    user.refresh_from_db()
    assert user.check_password(new)


def test_a_successful_sign_in_resets_the_count(client, settings):
    user = UserFactory()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, user.username, "wrong")
    assert sign_in(client, user.username, PASSWORD).status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert sign_in(client, user.username, "wrong").status_code == 200
    assert sign_in(client, user.username, PASSWORD).status_code == 302


def test_the_lock_ends_after_the_cool_off(client, settings):
    from axes.models import AccessAttempt

    user = UserFactory()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, user.username, "wrong")
    assert sign_in(client, user.username, PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert sign_in(client, user.username, PASSWORD).status_code == 302


def test_a_request_over_the_total_size_limit_is_refused_before_it_is_read(client, settings, png):
    settings.UPLOAD_MAX_REQUEST_BYTES = 50_000
    user = UserFactory()
    client.force_login(user)
    files = [SimpleUploadedFile(f"big-{i}.png", png + bytes(20_000)) for i in range(3)]
    response = client.post(reverse("classifier:home"), {"images": files}, follow=True)
    assert response.status_code == 200
    assert "one upload can carry at most 0.05 MB" in response.content.decode()
    assert not DigitImage.objects.exists()


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("//evil.example/", "", "/"),
        # What a server hands on for /%2F%2Fevil.example/ (the path arrives decoded).
        ("///evil.example/", "", "/"),
        ("/\\/evil.example/", "", "/%5C/evil.example/"),
        ("/history/", "digit=3", "/history/?digit=3"),
    ],
)
def test_the_size_limit_redirect_stays_on_this_site(client, settings, path, query, expected):
    """An oversized POST to a crafted path must not send the browser to another site."""
    settings.UPLOAD_MAX_REQUEST_BYTES = 10
    client.force_login(UserFactory())
    # The test client would read "//evil.example/" as a host: give the server the raw path.
    response = client.generic(
        "POST", "/", b"x" * 11, content_type="application/octet-stream", PATH_INFO=path, QUERY_STRING=query
    )
    assert response.status_code == 302
    assert response["Location"] == expected


def test_uploads_over_the_rate_limit_are_refused_with_when_to_come_back(client, settings, png):
    settings.UPLOAD_RATE_LIMIT = 5
    user = UserFactory()
    client.force_login(user)
    old = DigitImageFactory(owner=user, data=png)
    DigitImage.objects.filter(pk=old.pk).update(uploaded_at=timezone.now() - timedelta(minutes=61))
    recent = DigitImageFactory.create_batch(3, owner=user, data=png)
    DigitImage.objects.filter(pk=recent[0].pk).update(uploaded_at=timezone.now() - timedelta(minutes=49, seconds=30))

    files = [SimpleUploadedFile(f"digit-{i}.png", png) for i in range(4)]
    response = client.post(reverse("classifier:home"), {"images": files}, follow=True)
    text = response.content.decode().replace("\xa0", " ")
    assert "2 images uploaded" in text
    # The oldest upload in the window is 49.5 minutes old: room again in 10 minutes.
    assert "digit-2.png: Upload limit reached: 5 images per hour. You can upload more in 10 minutes." in text
    assert "digit-3.png: Upload limit reached" in text
    assert DigitImage.objects.filter(owner=user).count() == 6

    # Someone else's allowance is their own.
    other = UserFactory()
    client.force_login(other)
    text = client.post(reverse("classifier:home"), {"images": [SimpleUploadedFile("x.png", png)]}, follow=True)
    assert "1 image uploaded" in text.content.decode()


def test_an_empty_file_is_refused_on_its_own(client, png):
    user = UserFactory()
    client.force_login(user)
    files = [SimpleUploadedFile("empty.png", b""), SimpleUploadedFile("seven.png", png)]
    text = client.post(reverse("classifier:home"), {"images": files}, follow=True).content.decode()
    assert "empty.png: The file is empty." in text and "1 image uploaded" in text
    assert list(DigitImage.objects.values_list("original_name", flat=True)) == ["seven.png"]


def _manage(*args, **env):
    # Only what a deployment would set: no test-only switches (the browser tests set
    # DJANGO_ALLOW_ASYNC_UNSAFE, which the checklist rightly refuses).
    unset = ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE")
    environment = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=environment | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


DEPLOY_CHECK = ("check", "--deploy", "--fail-level", "WARNING")


def _production(**env) -> dict[str, str]:
    """What a production deployment sets at the least, and ``env``."""
    return {"PRODUCTION": "true", "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "digits.example.com"} | env


def test_production_settings_pass_the_deployment_checklist():
    result = _manage(*DEPLOY_CHECK, **_production())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_refuses_to_start_without_its_own_secret_key():
    result = _manage("check", PRODUCTION="true", ALLOWED_HOSTS="digits.example.com")
    assert result.returncode != 0
    assert "Set the SECRET_KEY environment variable" in result.stderr


def test_development_settings_would_fail_the_checklist():
    """The check above can fail: without PRODUCTION the same checklist warns."""
    result = _manage(*DEPLOY_CHECK)
    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout  # no HSTS


# --- API tokens end with the password --------------------------------------------------------

NEW_PASSWORD = "another long passphrase 7"


def _token_works(key: str) -> bool:
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api.get(reverse("api:image-list")).status_code == 200


def _change_on_the_password_change_page(client, user):
    client.force_login(user)
    data = {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    assert client.post(reverse("password_change"), data).status_code == 302


def _change_through_a_reset_link(client, user):
    from django.core import mail

    user.email = "someone@example.com"
    user.save()
    assert client.post(reverse("password_reset"), {"email": user.email}).status_code == 302
    link = next(line for line in mail.outbox[-1].body.splitlines() if "/accounts/reset/" in line)
    response = client.get(link.strip(), follow=True)  # Django swaps the token for a session key
    data = {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    assert client.post(response.redirect_chain[-1][0], data).status_code == 302


def _change_in_the_admin(client, user):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    url = reverse("admin:auth_user_password_change", args=[user.pk])
    data = {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"}
    assert client.post(url, data).status_code == 302


@pytest.mark.parametrize(
    "change", [_change_on_the_password_change_page, _change_through_a_reset_link, _change_in_the_admin]
)
def test_a_password_change_revokes_the_api_token(client, change):
    from classifier.services import api_token_create

    user = UserFactory()
    key = api_token_create(user=user).key
    assert _token_works(key)
    change(client, user)
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert not _token_works(key)


def test_a_save_that_keeps_the_password_keeps_the_token(client):
    from classifier.services import api_token_create

    user = UserFactory()
    key = api_token_create(user=user).key
    assert sign_in(client, user.username, PASSWORD).status_code == 302  # saves last_login
    user.first_name = "Ada"
    user.save()
    assert _token_works(key)


def test_the_token_page_is_never_cached_and_says_a_password_change_revokes_it(client):
    from classifier.services import api_token_create

    user = UserFactory()
    api_token_create(user=user)
    client.force_login(user)
    response = client.get(reverse("classifier:api_token"))
    assert "no-store" in response["Cache-Control"]
    assert "Changing your password revokes your token" in response.content.decode()


# --- Password reset: no links in the logs, rate-limited, the same answer for everyone ---------

CONSOLE_MAIL = "django.core.mail.backends.console.EmailBackend"


@pytest.fixture
def fresh_cache():
    from django.core.cache import cache

    cache.clear()  # reset counts live in the cache
    yield
    cache.clear()


def test_production_refuses_to_start_with_the_console_mail_backend():
    result = _manage("check", **_production(EMAIL_BACKEND=CONSOLE_MAIL))
    assert result.returncode != 0
    assert "Set EMAIL_URL" in result.stderr and "password-reset links" in result.stderr


def test_production_with_a_mail_server_passes_the_deployment_checklist():
    result = _manage(*DEPLOY_CHECK, **_production(EMAIL_URL="smtp+tls://digitsite:secret@mail.example.com:587"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_without_a_mail_server_sends_no_reset_link_anywhere(tmp_path):
    """The red-team case: a staff address under PRODUCTION, anonymous, nothing configured."""
    script = (
        "from django.core.management import call_command; call_command('migrate', verbosity=0)\n"
        "from django.contrib.auth.models import User\n"
        "User.objects.create_superuser('root', 'root@example.com', 'x' * 20)\n"
        "from django.test import Client, override_settings\n"
        # Static files are not collected here: pages look them up without the manifest.
        "plain = {'BACKEND': 'django.contrib.staticfiles.storage.StaticFilesStorage'}\n"
        "override_settings(STORAGES={'default': plain, 'staticfiles': plain}).enable()\n"
        "c = Client(HTTP_HOST='digits.example.com')\n"
        "page = c.get('/accounts/password_reset/', secure=True)\n"
        "print('GET', page.status_code, 'not available' in page.content.decode())\n"
        "sent = c.post('/accounts/password_reset/', {'email': 'root@example.com'}, secure=True)\n"
        "print('POST', sent.status_code)\n"
    )
    result = _manage(
        "shell",
        "-c",
        script,
        **_production(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}"),
    )
    assert result.returncode == 0, result.stderr
    assert "GET 200 True" in result.stdout
    assert "/accounts/reset/" not in result.stdout + result.stderr


def _reset(client, email, address="10.0.0.1"):
    return client.post(reverse("password_reset"), {"email": email}, REMOTE_ADDR=address)


@pytest.mark.usefixtures("fresh_cache")
def test_password_reset_answers_the_same_whether_or_not_the_address_exists(client, mailoutbox):
    UserFactory(email="known@example.com", is_staff=True)
    known = _reset(client, "known@example.com")
    unknown = _reset(client, "nobody@example.com")
    assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])
    assert known["Location"] == reverse("password_reset_done")
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["known@example.com"]


@pytest.mark.usefixtures("fresh_cache")
def test_password_reset_is_rate_limited_per_address_and_per_e_mail_with_the_same_answer(client, settings, mailoutbox):
    settings.PASSWORD_RESET_RATE_PER_EMAIL = 2
    settings.PASSWORD_RESET_RATE_PER_ADDRESS = 3
    UserFactory(email="known@example.com")
    for user_number in range(3):
        UserFactory(email=f"other{user_number}@example.com")
    expected = reverse("password_reset_done")

    # Per e-mail: two mails, then the same answer and no mail, from any address.
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        assert _reset(client, "known@example.com", address)["Location"] == expected
    assert len(mailoutbox) == 2

    # Per address: 10.0.0.3 already asked once; two more, then refused quietly.
    for user_number in range(3):
        assert _reset(client, f"other{user_number}@example.com", "10.0.0.3")["Location"] == expected
    assert [m.to for m in mailoutbox[2:]] == [["other0@example.com"], ["other1@example.com"]]
    # A limited request for an unknown address answers the same as one for a known address.
    assert _reset(client, "nobody@example.com", "10.0.0.3")["Location"] == expected
    # Another address may still ask for the same link.
    _reset(client, "other2@example.com", "10.0.0.9")
    assert mailoutbox[-1].to == ["other2@example.com"] and len(mailoutbox) == 5


# --- Content-Security-Policy -------------------------------------------------------------------


def test_pages_are_sent_with_a_content_security_policy_that_runs_no_inline_script(client):
    client.force_login(UserFactory())
    for name in ("classifier:home", "classifier:draw", "api:docs"):
        policy = client.get(reverse(name))["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        script_src = directives["script-src"].split()
        assert "'self'" in script_src and not {"'unsafe-inline'", "'unsafe-eval'", "*"} & set(script_src)
        assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    # The documentation page's one inline style sheet carries this response's nonce.
    docs = client.get(reverse("api:docs"))
    nonce = docs["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    assert f'<style nonce="{nonce}">' in docs.content.decode() and "<script>" not in docs.content.decode()


def test_sign_ups_are_limited_per_client_address_with_a_clear_page(client, settings):
    """Every account has its own upload and API limits: unlimited sign-ups from one address
    would multiply them. Over the limit nothing is created and the page says why."""
    from django.contrib.auth import get_user_model

    settings.SIGNUP_RATE_PER_ADDRESS = 3

    def sign_up(name, address):
        client.logout()
        fields = {"username": name, "password1": "a long passphrase 4711", "password2": "a long passphrase 4711"}
        return client.post(reverse("classifier:signup"), fields, REMOTE_ADDR=address)

    for n in range(3):
        assert sign_up(f"bulk{n}", "10.0.0.1").status_code == 302
    response = sign_up("bulk3", "10.0.0.1")
    assert response.status_code == 429
    text = response.content.decode()
    assert "Too many new accounts from your network" in text and "No account was created" in text
    assert not get_user_model().objects.filter(username="bulk3").exists()
    # Other addresses are not affected.
    assert sign_up("other", "10.0.0.2").status_code == 302


# --- Behind a reverse proxy: each client counted on its own address (issue 42, finding 6) ------

PROXY = "10.0.0.254"  # behind the proxy every request comes from its address


def _through_the_proxy(client, url, fields, forwarded):
    return client.post(url, fields, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded)


@pytest.mark.usefixtures("fresh_cache")
def test_behind_a_trusted_proxy_one_client_s_wrong_passwords_do_not_lock_out_another(client, settings):
    """The red-team case: 5 wrong passwords from one client locked the owner out from another,
    because both came from the proxy's address. The attacker also writes the owner's address
    in X-Forwarded-For; the proxy appends the address it saw, and only that one counts."""
    settings.TRUSTED_PROXY_COUNT = 1
    user = UserFactory()
    login, owner, attacker = reverse("login"), "198.51.100.7", "203.0.113.9"
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _through_the_proxy(client, login, {"username": user.username, "password": "wrong"}, f"{owner}, {attacker}")
    right = {"username": user.username, "password": PASSWORD}
    assert _through_the_proxy(client, login, right, attacker).status_code == 429
    response = _through_the_proxy(client, login, right, owner)
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(user.pk)


@pytest.mark.usefixtures("fresh_cache")
def test_without_a_trusted_proxy_a_forged_forwarded_address_changes_nothing(client, settings):
    assert settings.TRUSTED_PROXY_COUNT == 0  # the default: no proxy of ours writes the header
    user = UserFactory()
    login = reverse("login")
    for n in range(settings.AXES_FAILURE_LIMIT):
        wrong = {"username": user.username, "password": "wrong"}
        client.post(login, wrong, REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")
    right = {"username": user.username, "password": PASSWORD}
    assert client.post(login, right, REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="198.51.100.99").status_code == 429


@pytest.mark.usefixtures("fresh_cache")
def test_behind_a_trusted_proxy_sign_ups_and_resets_are_counted_per_forwarded_address(client, settings, mailoutbox):
    from django.contrib.auth import get_user_model

    settings.TRUSTED_PROXY_COUNT = 1
    settings.SIGNUP_RATE_PER_ADDRESS = 2
    settings.PASSWORD_RESET_RATE_PER_ADDRESS = 1
    passphrase = "a long passphrase 4711"

    def sign_up(name, forwarded):
        client.logout()
        fields = {"username": name, "password1": passphrase, "password2": passphrase}
        return _through_the_proxy(client, reverse("classifier:signup"), fields, forwarded)

    assert [sign_up(f"bulk{n}", "203.0.113.9").status_code for n in range(3)] == [302, 302, 429]
    assert sign_up("neighbour", "198.51.100.7").status_code == 302
    assert get_user_model().objects.filter(username__in=["bulk2", "neighbour"]).count() == 1

    UserFactory(email="a@example.com"), UserFactory(email="b@example.com")
    client.logout()
    for email in ("a@example.com", "b@example.com"):  # the second is over the one-per-address limit
        _through_the_proxy(client, reverse("password_reset"), {"email": email}, "203.0.113.9")
    _through_the_proxy(client, reverse("password_reset"), {"email": "b@example.com"}, "198.51.100.7")
    assert [m.to for m in mailoutbox] == [["a@example.com"], ["b@example.com"]]


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "198.51.100.7", PROXY),  # no proxy trusted: the header is anyone's
        (1, "", PROXY),  # came from inside, not through the proxy
        (1, "1.2.3.4, 198.51.100.7", "198.51.100.7"),  # the client's own entry is ignored
        (2, "1.2.3.4, 198.51.100.7, 10.0.0.9", "198.51.100.7"),
        (2, "10.0.0.9", PROXY),  # fewer entries than proxies: not through both
        (1, "not-an-address", PROXY),
        (1, "2001:db8::1", "2001:db8::1"),
    ],
)
def test_the_client_address_is_the_one_the_first_trusted_proxy_saw(rf, settings, proxies, forwarded, expected):
    from classifier.addresses import client_address

    settings.TRUSTED_PROXY_COUNT = proxies
    assert client_address(rf.get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded)) == expected


# --- A production secret key that is a secret (issue 42) ------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["django-insecure-dev-only-not-for-production", "abcde", "x" * 60, secrets.token_urlsafe(20)],
    ids=["development", "five-characters", "one-character-repeated", "short"],
)
def test_production_refuses_to_start_with_a_weak_secret_key(key):
    result = _manage("check", **_production(SECRET_KEY=key))
    assert result.returncode != 0
    assert "SECRET_KEY is the development key or too weak" in result.stderr
    assert "secrets.token_urlsafe(50)" in result.stderr
