from django.core.management.base import BaseCommand, CommandError

from classifier.models import ModelVersion
from classifier.services import ModelVersionUnavailable, model_version_activate


class Command(BaseCommand):
    help = "Make a model version the active one (for example to roll back). Workers switch on their next image."

    def add_arguments(self, parser):
        parser.add_argument("version", help="version number, with or without a leading v")

    def handle(self, *args, version, **options):
        try:
            number = int(version.lstrip("vV"))
        except ValueError:
            raise CommandError(f"{version!r} is not a version number") from None
        try:
            activated = model_version_activate(number=number)
        except ModelVersion.DoesNotExist:
            known = ", ".join(f"v{n}" for n in ModelVersion.objects.values_list("number", flat=True))
            raise CommandError(f"there is no v{number}; known versions: {known or 'none'}") from None
        except ModelVersionUnavailable as exc:
            raise CommandError(f"not activated, the active version stays: {exc}") from None
        self.stdout.write(self.style.SUCCESS(f"v{activated.number} is now active."))
        if activated.judged_worse_on:
            # The table it was judged on when it was retrained, as the admin shows it before activating.
            worse = ", ".join(activated.judged_worse_on)
            self.stdout.write(self.style.WARNING(f"It read {worse} worse than its parent when it was judged:"))
            for row in activated.judging:
                self.stdout.write(
                    f"  {row['set']:<28} {row['parent_percent']:>5}% -> {row['candidate_percent']:>5}% "
                    f"{row['difference_points']:>6} points (noise {row['noise_points']})  {row['verdict']}"
                )
