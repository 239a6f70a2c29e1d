"""Pieces shared by every script: the config loader, user-facing errors, output folders."""
import os

# TensorFlow's C++ start-up chatter (oneDNN notes, "no CUDA driver") hides the suite's own messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
