"""The embedded broker: kombu's filesystem transport, so `make run` needs no Redis yet runs a
real, separate worker process. Web and worker exchange messages as files in one folder."""

import logging
import os
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from queue import Empty
from time import monotonic

from kombu import Connection
from kombu.exceptions import ChannelError
from kombu.exceptions import ConnectionError as KombuConnectionError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

# The transport Celery uses for filesystem:// (CELERY_BROKER_TRANSPORT).
FILESYSTEM_TRANSPORT = "digitsite.brokers:Transport"

logger = logging.getLogger(__name__)

# A reader that finds the folders unusable waits this long before it looks again, doubling up
# to the most (short enough for Ctrl-C to stop a worker at once).
BACKOFF_FIRST_SECONDS, BACKOFF_MOST_SECONDS = 0.25, 2.0


def filesystem_broker_options(folder: str | Path) -> dict:
    folder = Path(folder)
    queue, control = folder / "queue", folder / "control"
    queue.mkdir(parents=True, exist_ok=True)
    control.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(queue),
        "data_folder_out": str(queue),
        "control_folder": str(control),
        "store_processed": False,
        # Kombu polls the folder once a second by default, and with prefetch 1 a worker
        # waits for the next poll after every task: a limit of one image a second.
        "polling_interval": 0.05,
    }


class Channel(filesystem.Channel):
    """Kombu's filesystem channel, recreating its folders before each use: a broker folder
    removed while the site runs (a cleanup, a new volume) then costs the messages it held,
    which `requeue_stale` sends again, instead of a worker dead of a FileNotFoundError."""

    @property
    def folders(self) -> set[Path]:
        return {Path(self.data_folder_in), Path(self.data_folder_out), self.control_folder}

    @contextmanager
    def _folders_ready(self):
        # Any other trouble with the folders (a file in the way, no permission) becomes a
        # connection error: the worker reconnects and tries again rather than exiting.
        try:
            for folder in self.folders:
                folder.mkdir(parents=True, exist_ok=True)
            yield
        except OSError as exc:
            raise KombuConnectionError(f"the broker folder cannot be used: {exc}") from exc

    # This process's view of the folders, for reading: None while usable, else since when
    # (monotonic) and how many looks in a row failed.
    _trouble: dict | None = None

    def _get(self, queue):
        # A folder that cannot be used (a file in its place, no permission) is a wait, not a
        # lost connection: reconnecting would not help, and the consumer restarted about five
        # times a second, logging each (7,278 lines in 15 s). The reader backs off, says so
        # once, and once more when the folder is usable again.
        try:
            with self._folders_ready():
                message = super()._get(queue)
        except KombuConnectionError as exc:
            self._wait_for_folders(exc)
            raise Empty() from None
        except Empty:
            self._folders_usable()
            raise
        self._folders_usable()
        return message

    @classmethod
    def _wait_for_folders(cls, exc: Exception) -> None:
        trouble = cls._trouble
        if trouble is None:
            trouble = Channel._trouble = {"since": monotonic(), "failures": 0}
            logger.error(
                "%s; waiting for it (backing off up to %.0f s), quiet until it changes", exc, BACKOFF_MOST_SECONDS
            )
        trouble["failures"] += 1
        time.sleep(min(BACKOFF_FIRST_SECONDS * 2 ** (trouble["failures"] - 1), BACKOFF_MOST_SECONDS))

    @classmethod
    def _folders_usable(cls) -> None:
        if cls._trouble is not None:
            seconds = monotonic() - cls._trouble["since"]
            logger.warning(
                "the broker folder is usable again after %.0f s (%d looks)", seconds, cls._trouble["failures"]
            )
            Channel._trouble = None

    def _put(self, queue, payload, **kwargs):
        # Kombu creates the message file under its final name and then writes it, so a worker
        # polling the folder can take it while it is still empty: it died of a JSONDecodeError
        # and the message was lost (seen under load, with the draw page's frequent previews).
        # Written under a name no reader takes ('.' first: not "<queue>.msg" after the first
        # dot), then renamed into place, a message appears whole or not at all.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = Path(self.data_folder_out) / name
        partial = final.with_name(f".{name}.partial")
        with self._folders_ready():
            try:
                partial.write_bytes(str_to_bytes(dumps(payload)))
                os.replace(partial, final)
            except OSError as exc:
                partial.unlink(missing_ok=True)
                raise ChannelError(f"Cannot add file {str(final)!r} to directory") from exc

    def _size(self, queue):
        with self._folders_ready():
            return super()._size(queue)

    def _purge(self, queue):
        with self._folders_ready():
            return super()._purge(queue)

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        with self._folders_ready():
            super()._queue_bind(exchange, routing_key, pattern, queue)

    def probe(self) -> None:
        """For /healthz: raise unless every folder exists and takes a file (creating none)."""
        for folder in self.folders:
            probe = folder / f".healthz-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()


class Transport(filesystem.Transport):
    Channel = Channel

    # The folders are the whole address: no host to fall back to (kombu warned "No hostname
    # was supplied" at every start).
    @property
    def default_connection_params(self) -> dict:
        return {}

    # Celery's loop for a transport without events waits 2 s for a message before it looks
    # for a shutdown request; shorter waits let Ctrl-C stop the worker at once. The loop goes
    # round a few more times a second, and the folder is polled as often as before. A wait
    # without a timeout (blocking) stays one.
    MAX_WAIT_SECONDS = 0.25

    def drain_events(self, connection, timeout=None):
        if timeout is not None:
            timeout = min(timeout, self.MAX_WAIT_SECONDS)
        return super().drain_events(connection, timeout=timeout)


def broker_check(connection: Connection) -> None:
    """Raise unless the broker would take a message: the embedded broker's folders must exist
    and be writable, Redis must answer a PING."""
    channel = connection.default_channel
    if isinstance(channel, Channel):
        channel.probe()
    else:
        channel.client.ping()
