"""The embedded broker: kombu's filesystem transport, so `make run` needs no Redis yet runs a
real, separate worker process. Web and worker exchange messages as files in one folder."""

from pathlib import Path


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
