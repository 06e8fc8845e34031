import hashlib

import factory
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile

from classifier.models import DigitImage, Flag, ModelVersion
from ml.tests.conftest import SHIPPED_MODEL_DIR


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct horse battery staple")


class ReviewerFactory(UserFactory):
    """A staff member in the Reviewers group: what reviewing needs, not a superuser. The
    migrations make the group; tests on a flushed database (live server, real workers) lose it,
    so it is made again here as the migration makes it."""

    class Meta:
        skip_postgeneration_save = True

    is_staff = True

    @factory.post_generation
    def reviewers(self, create, extracted, **kwargs):
        if create:
            from django.contrib.auth.models import Group, Permission

            from classifier.permissions import REVIEWER_PERMISSIONS, REVIEWERS_GROUP

            group, made = Group.objects.get_or_create(name=REVIEWERS_GROUP)
            if made:
                group.permissions.add(
                    *Permission.objects.filter(content_type__app_label="classifier", codename__in=REVIEWER_PERMISSIONS)
                )
            self.groups.add(group)


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelVersion

    number = factory.Sequence(lambda n: n + 100)  # v1 is the shipped model, made on migrate
    architecture = "deep"
    path = str(SHIPPED_MODEL_DIR)
    metrics = factory.LazyFunction(lambda: {"test_accuracy": 0.99})
    is_active = False


class DigitImageFactory(factory.django.DjangoModelFactory):
    """An uploaded image; ``data`` is the file's bytes (a PNG by default)."""

    class Meta:
        model = DigitImage

    class Params:
        data = b""

    owner = factory.SubFactory(UserFactory)
    original_name = factory.Sequence(lambda n: f"digit-{n}.png")
    image_format = "PNG"
    content_type = "image/png"
    sha256 = factory.LazyAttribute(lambda o: hashlib.sha256(o.data).hexdigest())
    size_bytes = factory.LazyAttribute(lambda o: len(o.data))
    width = 28
    height = 28
    file = factory.LazyAttribute(lambda o: ContentFile(o.data, name="upload.png"))


class FlagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Flag

    image = factory.SubFactory(DigitImageFactory)
    correct_digit = 7
    flagged_by = factory.SubFactory(UserFactory, is_staff=True)
