"""The embedded broker: kombu's filesystem transport, so `make run` needs no Redis yet runs a
real, separate worker process. Web and worker exchange messages as files in one folder."""

import uuid
from contextlib import contextmanager
from pathlib import Path

from kombu import Connection
from kombu.exceptions import ConnectionError as KombuConnectionError
from kombu.transport import filesystem

# The transport Celery uses for filesystem:// (CELERY_BROKER_TRANSPORT).
FILESYSTEM_TRANSPORT = "digitsite.brokers:Transport"


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

    def _get(self, queue):
        with self._folders_ready():
            return super()._get(queue)

    def _put(self, queue, payload, **kwargs):
        with self._folders_ready():
            super()._put(queue, payload, **kwargs)

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


def broker_check(connection: Connection) -> None:
    """Raise unless the broker would take a message: the embedded broker's folders must exist
    and be writable, Redis must answer a PING."""
    channel = connection.default_channel
    if isinstance(channel, Channel):
        channel.probe()
    else:
        channel.client.ping()
