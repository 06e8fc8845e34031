"""Every URL of the site has an access rule, and the rule holds.

The test walks all URL patterns: a new URL without an entry in RULES fails it.
"""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from classifier.models import DigitImage, DrawingPreview, Flag, Prediction
from classifier.services import model_version_ensure_initial
from classifier.tests.factories import DigitImageFactory, ReviewerFactory, UserFactory
from ml.tests.conftest import encode

pytestmark = pytest.mark.django_db

# name -> who may open it: "public" (anyone), "user" (any signed-in user), "owner" (the
# image's owner and staff; others 404), "staff" (others 404), "post-only" (signed-in users,
# POST only), "owner-post" (the image's owner only, POST only; everyone else 404), "drawer"
# (the person drawing, staff included, only their own drawing in progress; others 404),
# "owner-only" (the image's owner only, GET and POST; everyone else, staff included, 404),
# "staff-post" (staff only, on any image, POST only; everyone else, the owner included, 404).
# Admin URLs are covered by their own rule below.
RULES = {
    "classifier:home": "public",  # the landing page for visitors; uploading needs an account
    "classifier:signup": "public",
    "classifier:draw": "user",
    "classifier:upload_inline": "post-only",
    "classifier:draw_preview": "post-only",
    "classifier:draw_preview_result": "drawer",
    "classifier:history": "user",
    "classifier:history_export": "user",
    "classifier:stats": "staff",
    "classifier:api_token": "user",
    "classifier:account": "user",
    "classifier:account_data": "user",
    "classifier:account_delete": "user",
    "healthz": "public",
    "api:image-list": "user",
    "api:image-detail": "owner",
    "api:image-file": "owner",
    "api:image-feedback": "owner-post",
    "api:model-list": "user",
    "api:schema": "user",
    "api:docs": "user",
    "classifier:image_detail": "owner",
    "classifier:image_card": "owner",
    "classifier:image_detail_result": "owner",
    "classifier:image_file": "owner",
    "classifier:image_model_input": "owner",
    "classifier:image_grad_cam": "owner",
    "classifier:image_digit_input": "owner",
    "classifier:image_feedback": "owner-post",
    "classifier:image_retry": "owner-post",
    "classifier:image_read_as": "owner-post",
    "classifier:image_flag": "staff-post",
    "classifier:image_delete": "owner-only",  # GET: the confirmation page; POST: delete
    "login": "public",
    "logout": "post-only",
    "password_change": "user",
    "password_change_done": "user",
    "password_reset": "public",
    "password_reset_done": "public",
    "password_reset_confirm": "public",
    "password_reset_complete": "public",
}


def _named_patterns(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            namespace = f"{prefix}{pattern.namespace}:" if pattern.namespace else prefix
            yield from _named_patterns(pattern.url_patterns, namespace)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield f"{prefix}{pattern.name}"


# Under /api/ but a page for people: anonymous visitors go to log in, as on the site.
API_PAGES = {"api:docs"}

SITE_URLS = sorted({name for name in _named_patterns(get_resolver().url_patterns) if not name.startswith("admin:")})


def test_every_url_has_a_rule():
    assert set(SITE_URLS) - set(RULES) == set(), "add an access rule (and its test) for these URLs"


@pytest.fixture
def image(mnist):
    owner = UserFactory()
    image = DigitImageFactory(owner=owner, data=encode(mnist.test.images[0]), status=DigitImage.Status.DONE)
    Prediction.objects.create(
        image=image,
        digit=7,
        confidence=0.9,
        probabilities=[0.01] * 9 + [0.91],
        model_version=model_version_ensure_initial(),
        model_input=bytes(784),
        saliency=bytes(784),
        inference_ms=1.0,
    )
    return image


def _url(name, image):
    if RULES[name] in ("owner", "owner-post", "owner-only", "staff-post"):
        return reverse(name, args=[image.pk, 0] if name == "classifier:image_digit_input" else [image.pk])
    if RULES[name] == "drawer":
        preview = DrawingPreview.objects.create(owner=image.owner, drawing=b"\x89PNG")
        return reverse(name, args=[preview.pk])
    if name == "password_reset_confirm":
        return reverse(name, kwargs={"uidb64": "MQ", "token": "set-password"})
    return reverse(name)


@pytest.mark.parametrize("name", SITE_URLS)
def test_anonymous_visitors(client, image, name):
    response = client.get(_url(name, image))
    if RULES[name] == "public":
        assert response.status_code in (200, 302)
        assert "/accounts/login/" not in response.get("Location", "") or name == "logout"
    elif name.startswith("api:") and name not in API_PAGES:
        assert response.status_code == 401  # the API answers for itself: no redirect to a page
        assert response["WWW-Authenticate"] == "Token"
    else:
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", [n for n in SITE_URLS if RULES.get(n) == "owner"])
def test_owner_gets_it_and_everyone_else_gets_404(client, image, name):
    url = _url(name, image)
    client.force_login(image.owner)
    assert client.get(url).status_code in (200, 286)
    client.force_login(UserFactory())
    assert client.get(url).status_code == 404
    client.force_login(ReviewerFactory())
    assert client.get(url).status_code in (200, 286)


@pytest.mark.parametrize("name", [n for n in SITE_URLS if RULES.get(n) == "drawer"])
def test_a_drawing_in_progress_is_its_drawers_alone(client, image, name):
    url = _url(name, image)
    client.force_login(image.owner)
    assert client.get(url).status_code == 202  # no worker has read it yet
    for outsider in (UserFactory(), UserFactory(is_staff=True, is_superuser=True)):
        client.force_login(outsider)
        assert client.get(url).status_code == 404


@pytest.mark.parametrize("name", [n for n in SITE_URLS if RULES.get(n) == "user"])
def test_signed_in_pages(client, image, name):
    client.force_login(UserFactory())
    assert client.get(_url(name, image)).status_code == 200


@pytest.mark.parametrize("name", [n for n in SITE_URLS if RULES.get(n) in ("post-only", "owner-post")])
def test_post_only_urls_refuse_get(client, image, name):
    client.force_login(image.owner)
    assert client.get(_url(name, image)).status_code == 405


@pytest.mark.parametrize("name", [n for n in SITE_URLS if RULES.get(n) == "staff"])
def test_staff_pages(client, image, name):
    client.force_login(UserFactory())
    assert client.get(_url(name, image)).status_code == 404
    client.force_login(ReviewerFactory())
    assert client.get(_url(name, image)).status_code == 200


@pytest.mark.parametrize("name", [n for n in SITE_URLS if RULES.get(n) == "owner-post"])
def test_only_the_owner_may_post(client, image, name):
    url = _url(name, image)
    for outsider in (UserFactory(), ReviewerFactory()):
        client.force_login(outsider)
        assert client.post(url, {"digit": 3}).status_code == 404
    client.force_login(image.owner)
    assert client.post(url, {"digit": 3}).status_code in (200, 302)  # the API answers, the site redirects


@pytest.mark.parametrize("name", [n for n in SITE_URLS if RULES.get(n) == "staff-post"])
def test_only_staff_may_post(client, image, name):
    url = _url(name, image)
    for outsider in (UserFactory(), image.owner):
        client.force_login(outsider)
        assert client.post(url, {"flag-number": "3"}).status_code == 404
    client.force_login(ReviewerFactory())
    assert client.get(url).status_code == 405
    assert client.post(url, {"flag-number": "3"}).status_code == 302


@pytest.mark.parametrize("name", [n for n in SITE_URLS if RULES.get(n) == "owner-only"])
def test_only_the_owner_may_open_or_post(client, image, name):
    url = _url(name, image)
    for outsider in (UserFactory(), ReviewerFactory()):
        client.force_login(outsider)
        assert client.get(url).status_code == 404
        assert client.post(url).status_code == 404
    assert DigitImage.objects.filter(pk=image.pk).exists()  # nothing happened to it
    client.force_login(image.owner)
    assert client.get(url).status_code == 200
    assert client.post(url).status_code == 302


def test_the_admin_is_for_staff_only(client):
    url = reverse("admin:classifier_digitimage_changelist")
    assert client.get(url).status_code == 302
    client.force_login(UserFactory())
    assert client.get(url).status_code == 302
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    assert client.get(url).status_code == 200


def test_posts_need_a_csrf_token(image, mnist):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(image.owner)
    response = client.post(reverse("classifier:home"), {})
    assert response.status_code == 403
    response = client.post(reverse("logout"))
    assert response.status_code == 403
    for name in [n for n in SITE_URLS if RULES[n] in ("post-only", "owner-post", "owner-only")]:
        assert client.post(_url(name, image), {}).status_code == 403, name


# --- Staff without permissions get on the site what the admin gives them: nothing more -----


@pytest.fixture
def bare_staff():
    """``is_staff`` and no permission at all: the admin lets them in and shows them nothing."""
    return UserFactory(is_staff=True)


def test_the_admin_refuses_staff_without_permissions(client, bare_staff):
    client.force_login(bare_staff)
    assert client.get(reverse("admin:classifier_digitimage_changelist")).status_code == 403
    assert client.get(reverse("admin:classifier_flag_changelist")).status_code == 403


@pytest.mark.parametrize("name", SITE_URLS)
def test_staff_without_permissions_are_ordinary_users_on_every_url(client, image, bare_staff, name):
    """Every URL, walked as staff without permissions: what others' images need answers 404
    (as to any user), pages for every user answer as for any user, and no flag is stored."""
    url = _url(name, image)
    client.force_login(bare_staff)
    rule = RULES[name]
    if rule in ("owner", "owner-only", "drawer", "staff"):
        assert client.get(url).status_code == 404
    elif rule in ("owner-post", "staff-post"):
        assert client.post(url, {"digit": 3, "flag-number": "3"}).status_code == 404
    elif rule == "user":
        assert client.get(url).status_code == 200
    elif rule == "post-only":
        assert client.get(url).status_code == 405
    assert not Flag.objects.exists()


def test_staff_without_permissions_see_and_export_only_their_own_images(client, image, bare_staff, mnist):
    own = DigitImageFactory(owner=bare_staff, data=encode(mnist.test.images[1]))
    client.force_login(bare_staff)
    page = client.get(reverse("classifier:history"), {"everyone": "on"})
    assert [i.pk for i in page.context["page"].object_list] == [own.pk]
    assert "Everyone&#x27;s images" not in page.content.decode() and "Everyone's images" not in page.content.decode()
    export = client.get(reverse("classifier:history_export"), {"everyone": "on"}).getvalue().decode()
    assert len(export.strip().splitlines()) == 2  # the header and their own image
    listed = client.get(reverse("api:image-list"), {"everyone": "true"}).json()
    assert [i["id"] for i in listed["results"]] == [own.pk]
    assert "Statistics" not in client.get(reverse("classifier:history")).content.decode()


def test_the_reviewers_group_opens_what_reviewing_needs(client, image, mnist):
    """Staff given the Reviewers group (made by the migrations) see every image, export
    everyone's history, flag from the image's page and in the admin; superusers need no group."""
    from classifier.tests.factories import ReviewerFactory

    for staff in (ReviewerFactory(), UserFactory(is_staff=True, is_superuser=True)):
        client.force_login(staff)
        assert client.get(reverse("classifier:image_detail", args=[image.pk])).status_code == 200
        assert client.get(reverse("classifier:image_file", args=[image.pk])).status_code == 200
        export = client.get(reverse("classifier:history_export"), {"everyone": "on"}).getvalue().decode()
        assert len(export.strip().splitlines()) == 2  # the header and the owner's image
        assert client.get(reverse("admin:classifier_digitimage_changelist")).status_code == 200
        response = client.post(reverse("classifier:image_flag", args=[image.pk]), {"flag-number": "3"})
        assert response.status_code == 302
        assert Flag.objects.get(image=image).correct_number == "3"
        Flag.objects.all().delete()


def test_staff_who_may_only_view_images_cannot_flag_them_anywhere(client, image):
    from django.contrib.auth.models import Permission

    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_digitimage"))
    client.force_login(viewer)
    assert client.get(reverse("classifier:image_detail", args=[image.pk])).status_code == 200
    assert 'name="flag-number"' not in client.get(reverse("classifier:image_detail", args=[image.pk])).content.decode()
    assert client.post(reverse("classifier:image_flag", args=[image.pk]), {"flag-number": "3"}).status_code == 404
    changelist = reverse("admin:classifier_digitimage_changelist")
    page = client.get(changelist).content.decode()
    assert "flag_selected" not in page and "mark_reviewed" not in page
    client.post(changelist, {"action": "flag_selected", "_selected_action": [image.pk], "apply": "1", "note": ""})
    assert not Flag.objects.exists()


def test_staff_who_may_only_change_flags_cannot_change_what_a_flag_says(client, image):
    """Issue 42: change_flag alone let staff rewrite a flag's digit in the admin. Changing what a
    flag says is flagging, so it needs what flagging needs; with change_flag alone the page is
    read-only and a POST is refused. A reviewer's change is recorded as theirs."""
    from django.contrib.auth.models import Permission

    flag = Flag.objects.create(image=image, correct_number="3", flagged_by=ReviewerFactory())
    url = reverse("admin:classifier_flag_change", args=[flag.pk])
    changed = {"correct_number": "5", "correct_digit": "5", "note": "changed"}
    editor = UserFactory(is_staff=True)
    editor.user_permissions.add(Permission.objects.get(codename="change_flag"))
    client.force_login(editor)
    page = client.get(url)
    assert page.status_code == 200 and 'name="correct_number"' not in page.content.decode()
    assert client.post(url, changed).status_code == 403
    flag.refresh_from_db()
    assert (flag.correct_number, flag.correct_digit, flag.note) == ("3", 3, "")

    reviewer = ReviewerFactory()
    client.force_login(reviewer)
    assert client.post(url, changed).status_code == 302
    flag.refresh_from_db()
    assert (flag.correct_number, flag.correct_digit, flag.note, flag.flagged_by) == ("5", 5, "changed", reviewer)
