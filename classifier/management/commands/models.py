from django.core.management.base import BaseCommand

from classifier.selectors import model_version_list
from classifier.services import model_version_ensure_initial


class Command(BaseCommand):
    help = "List model versions with their metrics; the active one is marked with *."

    def handle(self, *args, **options):
        model_version_ensure_initial()
        self.stdout.write(
            f"  {'version':<8} {'arch':<8} {'MNIST':>8} {'corrections':>12} {'flags':>6}  created           notes"
        )
        for version in model_version_list():
            flag_accuracy = version.metrics.get("flag_accuracy")
            self.stdout.write(
                f"{'*' if version.is_active else ' '} {'v' + str(version.number):<8} {version.architecture:<8} "
                f"{version.test_accuracy or 0:>8.2%} "
                f"{'-' if flag_accuracy is None else f'{flag_accuracy:.0%}':>12} {version.flags_used:>6}  "
                f"{version.created_at:%Y-%m-%d %H:%M}  {version.notes[:60]}"
            )
