from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils.translation import ngettext

from classifier.queueing import images_requeue_stale


class Command(BaseCommand):
    help = (
        "Queue again the images stranded by a fault (never queued, taken by a worker that is gone) "
        "and those waiting since they were queued a while ago (for example after a broker outage)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=int,
            default=settings.CLASSIFY_STALE_AFTER_SECONDS,
            metavar="SECONDS",
            help="and any image queued at least this long ago (default: CLASSIFY_STALE_AFTER_SECONDS)",
        )

    def handle(self, *args, older_than, **options):
        requeued = images_requeue_stale(older_than=timedelta(seconds=older_than))
        count = len(requeued)
        self.stdout.write(ngettext("requeued %(count)d image", "requeued %(count)d images", count) % {"count": count})
