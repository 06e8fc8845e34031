import subprocess
import sys
import textwrap


def test_import_quietly_drops_only_tensorflows_startup_notices(tmp_path):
    # Written by C++ straight to file descriptor 2, as TensorFlow writes them.
    (tmp_path / "noisy.py").write_text(
        textwrap.dedent(
            """
            import os
            os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
            os.write(2, b"I0000 00:00:1.0  1 port.cc:153] oneDNN custom operations are on. You may see...\\n")
            os.write(2, b"E0000 something real went wrong\\n")
            VALUE = 42
            """
        )
    )
    script = "from ml.serving.quiet import import_quietly; print(import_quietly('noisy').VALUE)"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": f"{tmp_path}:."},
        check=True,
    )
    assert done.stdout.strip() == "42"
    assert done.stderr == "E0000 something real went wrong\n"
