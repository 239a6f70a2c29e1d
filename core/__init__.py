"""Pieces shared by every script: the config loader, user-facing errors, output folders."""
import os
import sys

# TensorFlow's C++ start-up chatter (oneDNN notes, "no CUDA driver") hides the suite's own messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tensorflow():
    """Import TensorFlow with the lines its C++ core prints at start-up kept off the terminal.

    Those lines ("All log messages before absl::InitializeLog() ...", oneDNN and CUDA notes) are written before any
    log level applies, so the process's stderr is pointed at /dev/null for the import and the platform probe.
    Errors still surface: Python exceptions propagate after stderr is restored. Returns the ``tensorflow`` module.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow

        tensorflow.config.list_physical_devices()  # the CUDA probe prints here, once
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tensorflow
