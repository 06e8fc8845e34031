"""The Reviewers group: what staff need to review images and correct readings on the site and
in the admin (see ``classifier.permissions``). Superusers need no group; other staff accounts
are given this one (or single permissions) in the admin."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

# Frozen here as they were when the group was made (classifier.permissions holds today's list).
REVIEWERS_GROUP = "Reviewers"
REVIEWER_PERMISSIONS = (
    "view_digitimage",
    "change_digitimage",
    "view_prediction",
    "view_flag",
    "add_flag",
    "change_flag",
    "view_feedback",
    "change_feedback",
    "view_modelversion",
)


def reviewers_create(apps, schema_editor):
    # Permissions are made after all migrations have run; make them now, on this database.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.using(schema_editor.connection.alias).get_or_create(name=REVIEWERS_GROUP)
    permissions = Permission.objects.using(schema_editor.connection.alias).filter(
        content_type__app_label="classifier", codename__in=REVIEWER_PERMISSIONS
    )
    group.permissions.add(*permissions)


def reviewers_remove(apps, schema_editor):
    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(name=REVIEWERS_GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("classifier", "0016_model_version_load_error"),
    ]

    operations = [migrations.RunPython(reviewers_create, reviewers_remove)]
