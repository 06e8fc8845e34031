"""A fresh machine, as the README's two commands meet it: the Makefile picks a Python from 3.11 to
3.13 and passes MNIST on only where it exists; requirements.txt installs on Linux and macOS."""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from classifier.tests.conftest import REPO
from ml.tests.conftest import SHARED_MNIST_DIR, unavailable

MAKE = shutil.which("make")
# What a new user's shell does not have: CI's MNIST_DATA_DIR (and `make test` exports it), a
# chosen PYTHON, and the flags of the `make test` that may be running this test.
NOT_ON_A_NEW_MACHINE = {"MNIST_DATA_DIR", "PYTHON", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"}


def make(*args: str, cwd: Path, path: str | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if name not in NOT_ON_A_NEW_MACHINE}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([MAKE, *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=60)


def checkout_copy(parent: Path) -> Path:
    """The tracked files in ``parent/digitsite``: no virtualenv, nothing beside it."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, text=True).stdout
    root = parent / "digitsite"
    for name in filter(None, listed.split("\0")):
        source, target = REPO / name, root / name
        if source.exists():  # a tracked file deleted in the working tree is not part of this checkout
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)
    return root


def mnist_seen_by_recipes(root: Path) -> str:
    """MNIST_DATA_DIR as `make run`'s and `make test`'s commands get it ('' when not set)."""
    show = 'mnist-dir:\n\t@echo "[$$MNIST_DATA_DIR]"\n'
    result = make("-s", "-f", "Makefile", "-f", "-", "mnist-dir", cwd=root, stdin=show)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().removeprefix("[").removesuffix("]")


def python_shims(folder: Path, versions: dict[str, str]) -> str:
    """A PATH of fake interpreters that only tell their version, as `python3 --version` does."""
    folder.mkdir()
    for name, version in versions.items():
        shim = folder / name
        shim.write_text(f'#!/bin/sh\necho "Python {version}"\n')
        shim.chmod(0o755)
    return str(folder)


# --- MNIST: ../shared where it exists, else the Keras download --------------------------------


def test_a_clone_alone_gets_no_mnist_path(tmp_path):
    root = checkout_copy(tmp_path)
    database = make("-pn", cwd=root)
    assert database.returncode == 0, database.stderr
    assert not re.search(r"^(export )?MNIST_DATA_DIR\b", database.stdout, re.MULTILINE)
    assert "shared/data/mnist" not in database.stdout
    assert mnist_seen_by_recipes(root) == ""
    dry_run = make("-n", "run", cwd=root)
    assert dry_run.returncode == 0, dry_run.stderr
    assert "mnist" not in dry_run.stdout.lower()


def test_a_clone_beside_shared_mnist_passes_it_on(tmp_path):
    root = checkout_copy(tmp_path)
    (tmp_path / "shared" / "data" / "mnist").mkdir(parents=True)
    database = make("-pn", cwd=root)
    assert database.returncode == 0, database.stderr
    assert re.search(r"^MNIST_DATA_DIR = ", database.stdout, re.MULTILINE)
    assert mnist_seen_by_recipes(root) == str(tmp_path / "shared" / "data" / "mnist")


def test_this_checkout_passes_on_mnist_only_if_shared_has_it():
    assert mnist_seen_by_recipes(REPO) == (str(SHARED_MNIST_DIR) if SHARED_MNIST_DIR.is_dir() else "")


# --- Python 3.11 to 3.13 ----------------------------------------------------------------------


def makefile_python_versions() -> list[str]:
    return re.search(r"^PYTHON_VERSIONS := (.+)$", (REPO / "Makefile").read_text(), re.MULTILINE)[1].split()


def test_the_makefile_accepts_the_pythons_pyproject_requires():
    required = SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    assert sorted(makefile_python_versions()) == [f"3.{minor}" for minor in range(30) if f"3.{minor}" in required]


@pytest.mark.parametrize(
    ("on_path", "chosen"),
    [
        ({"python3": "3.12.3"}, "python3"),
        ({"python3.11": "3.11.9", "python3.13": "3.13.1", "python3": "3.14.0"}, "python3.13"),
        ({"python3.12": "3.12.8", "python3": "3.11.2"}, "python3.12"),
    ],
    ids=["python3-is-3.12", "newest-named-one", "named-before-python3"],
)
def test_make_picks_the_newest_accepted_python(tmp_path, on_path, chosen):
    root = checkout_copy(tmp_path)
    result = make("-n", "install", cwd=root, path=python_shims(tmp_path / "bin", on_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"{chosen} -m venv .venv"


def test_make_uses_an_accepted_python_of_this_machine(tmp_path):
    result = make("-n", "install", cwd=checkout_copy(tmp_path))
    assert result.returncode == 0, result.stderr
    python = result.stdout.split()[0]
    version = subprocess.run([python, "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
    assert version.rsplit(".", 1)[0] in makefile_python_versions()


def test_make_install_stops_and_names_the_versions_without_one(tmp_path):
    root = checkout_copy(tmp_path)
    result = make("install", cwd=root, path=python_shims(tmp_path / "bin", {"python3": "3.10.12"}))
    assert result.returncode != 0
    assert "digitsite needs Python 3.11, 3.12 or 3.13" in result.stderr
    assert not (root / ".venv").exists()


# --- requirements.txt on every platform -------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A machine pip does not run on here: its environment markers and wheel tags."""

    sys_platform: str
    platform_system: str
    platform_machine: str
    python: str
    platforms: tuple[str, ...]

    def markers(self) -> dict[str, str]:
        return {
            "implementation_name": "cpython",
            "implementation_version": f"{self.python}.0",
            "os_name": "nt" if self.sys_platform == "win32" else "posix",
            "platform_machine": self.platform_machine,
            "platform_python_implementation": "CPython",
            "platform_system": self.platform_system,
            "python_full_version": f"{self.python}.0",
            "python_version": self.python,
            "sys_platform": self.sys_platform,
        }


# A glibc 2.35 machine (Ubuntu 22.04; Debian 12 and newer Ubuntu take these and more). pip widens
# manylinux2014 to manylinux2010 and manylinux1, but not the manylinux_2_N tags.
LINUX_X86_64 = (*(f"manylinux_2_{minor}_x86_64" for minor in range(35, 4, -1)), "manylinux2014_x86_64")
# pip widens a macOS tag to every older macOS release, down to 11 (the first on arm64).
MACOS_ARM64 = ("macosx_14_0_arm64",)


def linux(python: str) -> Target:
    return Target("linux", "Linux", "x86_64", python, LINUX_X86_64)


TARGETS = {
    "linux-3.11": linux("3.11"),
    "linux-3.12": linux("3.12"),
    "linux-3.13": linux("3.13"),
    "macos-arm64-3.12": Target("darwin", "Darwin", "arm64", "3.12", MACOS_ARM64),
}
WINDOWS = Target("win32", "Windows", "AMD64", "3.12", ("win_amd64",))


def requirements_for(target: Target) -> list[Requirement]:
    """requirements.txt as it applies to ``target``, markers resolved (pip would read this machine's)."""
    chosen = []
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(target.markers()):
            requirement.marker = None
            chosen.append(requirement)
    return chosen


@pytest.mark.parametrize(
    ("target", "wanted", "unwanted"),
    [
        (TARGETS["linux-3.12"], "tensorflow-cpu", "tensorflow"),
        (WINDOWS, "tensorflow-cpu", "tensorflow"),
        (TARGETS["macos-arm64-3.12"], "tensorflow", "tensorflow-cpu"),
    ],
    ids=["linux", "windows", "macos"],
)
def test_requirements_choose_tensorflow_per_platform(target, wanted, unwanted):
    names = {requirement.name for requirement in requirements_for(target)}
    assert wanted in names and unwanted not in names


def index_reachable() -> str | None:
    """None when the package index answers, else why not."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/")
    try:
        with urllib.request.urlopen(f"{index}/pip/", timeout=15):
            return None
    except (urllib.error.URLError, TimeoutError) as exc:
        return f"the package index {index} is not reachable ({exc})"


def dry_run(target: Target, folder: Path) -> subprocess.CompletedProcess:
    folder.mkdir()
    requirements = folder / "requirements.txt"
    requirements.write_text("".join(f"{requirement}\n" for requirement in requirements_for(target)))
    platforms = [argument for platform in target.platforms for argument in ("--platform", platform)]
    abi = "cp" + target.python.replace(".", "")
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:"]
    command += [*platforms, "--python-version", target.python, "--implementation", "cp", "--abi", abi]
    command += ["--quiet", "--report", str(folder / "report.json"), "-r", str(requirements)]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_requirements_resolve_to_wheels_on_linux_and_macos(tmp_path):
    """Each target's wheels exist on the index (the four resolve in parallel; network-bound).

    Dependencies' own markers are still read for this machine: pip has no way to take a target's.
    """
    if problem := index_reachable():
        unavailable(problem)
    with ThreadPoolExecutor(len(TARGETS)) as pool:
        futures = {name: pool.submit(dry_run, target, tmp_path / name) for name, target in TARGETS.items()}
    runs = {name: future.result() for name, future in futures.items()}
    failed = {name: run.stderr.strip().splitlines()[-3:] for name, run in runs.items() if run.returncode}
    assert not failed, f"no wheels for: {json.dumps(failed, indent=2)}"
    for name, target in TARGETS.items():
        report = json.loads((tmp_path / name / "report.json").read_text())
        resolved = {canonicalize_name(item["metadata"]["name"]) for item in report["install"]}
        wanted = {canonicalize_name(requirement.name) for requirement in requirements_for(target)}
        assert wanted <= resolved, f"{name}: {wanted - resolved} not resolved"


@pytest.mark.parametrize(("args", "port"), [((), "8000"), (("PORT=8123",), "8123")])
def test_make_run_serves_on_the_port_asked_for(args, port):
    """`make run PORT=N` reaches the Procfile's web process, which binds that port."""
    dry = subprocess.run(["make", "-n", "run", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert f"DIGITSITE_PORT={port} .venv/bin/honcho start" in dry and f"http://127.0.0.1:{port}/" in dry
    web = next(line for line in (REPO / "Procfile").read_text().splitlines() if line.startswith("web:"))
    command = web.removeprefix("web:").strip()
    expanded = subprocess.run(
        ["sh", "-c", f"echo {command}"], env={"DIGITSITE_PORT": port}, capture_output=True, text=True, check=True
    ).stdout
    assert expanded.strip().endswith(f"runserver 127.0.0.1:{port}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_make_run_starts_quietly_and_ctrl_c_stops_both_without_a_sigkill(tmp_path):
    """`make run` as on a fresh machine (SQLite, the embedded broker): its start logs nothing a
    person has to wonder about, and Ctrl-C (SIGINT to the terminal's process group) stops the
    web process and the worker within honcho's grace time, so it never needs a SIGKILL."""
    import signal
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "DJANGO_SETTINGS_MODULE")
    } | {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CELERY_BROKER_FOLDER": str(tmp_path / "broker"),
        "MEDIA_ROOT": str(tmp_path / "media"),
    }
    log_path = tmp_path / "make-run.log"
    with open(log_path, "w") as log:
        make = subprocess.Popen(
            ["make", "run", f"PORT={port}"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while "ready to classify" not in log_path.read_text():
            assert make.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker was not ready in 240 s"
            time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            assert response.status == 200
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C does in a terminal
        stopping = time.monotonic()
        while (make.poll() is None or _group_alive(make.pid)) and time.monotonic() - stopping < 30:
            time.sleep(0.2)
        text = log_path.read_text()
        assert not _group_alive(make.pid), text[-3000:]
    finally:
        if _group_alive(make.pid):
            os.killpg(make.pid, signal.SIGKILL)
    assert "web.1 stopped" in text and "worker.1 stopped" in text and "trainer.1 stopped" in text
    assert "SIGKILL" not in text, text[-3000:]
    # Django's own note that runserver is a development server says what it is; nothing else
    # may warn: no missing staticfiles/, no Celery root warning (CI runs as root), no kombu
    # "No hostname was supplied", no pool process dying at shutdown.
    worrying = [
        line
        for line in text.splitlines()
        if re.search(r"warn|error|traceback|superuser privileges", line, re.IGNORECASE)
        and "development server" not in line
        # a migration's name ("Applying classifier.0016_model_version_load_error... OK")
        and not re.fullmatch(r"\s*Applying \w+\.\w+\.\.\. OK", line.split("|", 1)[-1])
    ]
    assert worrying == []
