"""What to do without a network: a reachability probe and the instructions every offline error
shows. Imports nothing of the project."""

from __future__ import annotations

import socket

OFFLINE_HELP = (
    "To run on local data and weights instead, point the pipeline at them, e.g.\n"
    "  dvc exp run -S fetch.source=folder -S fetch.folder=/path/to/imagenet/val \\\n"
    "      -S model.weights=/path/to/mobilenet_v2_1.0_224_imagenet.weights.h5\n"
    "(fetch.folder: an ImageNet-style folder <folder>/<synset>/<image>; model.weights: a "
    "Keras .weights.h5 file for model.name; use absolute paths with dvc exp run --queue)")


def network_reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """True when a TCP connection to ``host:port`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
