"""The peer model: an external, already-converted ``.tflite`` classifier (e.g. a
quantization-aware-trained int8 model) measured beside the variants, on the same images.

Its conventions come from the model itself and from explicit params (``peer`` section), never
from its file name: images get the ``peer.preprocessing`` float range and are then quantized with
the input tensor's own scale/zero point (a ``uint8`` input with scale 1/128 and zero point 128
receives, in effect, raw 0..255 pixels); ``peer.label_offset`` leading outputs (a ``background``
class) are dropped before comparing with the float model's classes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from litequant.core.errors import PipelineError, relative_path_hint
from litequant.core.litert import LiteRTModel
from litequant.core.params import PeerParams


def peer_model(params: PeerParams, model_family: str) -> tuple[Path, str] | None:
    """The peer ``.tflite`` file and the preprocessing family its float input range follows.

    ``None`` when ``peer.path`` is null; a PipelineError when the file does not exist.
    ``peer.preprocessing: auto`` means ``model_family``, the exported Keras model's.
    """
    if params.path is None:
        return None
    path = Path(params.path)
    if not path.is_file():
        raise PipelineError(f"params.yaml: peer.path {path} is not a file"
                            f"{relative_path_hint(path)}")
    return path, model_family if params.preprocessing == "auto" else params.preprocessing


def describe_peer(path: Path) -> dict[str, Any]:
    """File facts (path, SHA-256, size) and tensor conventions of the peer model."""
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "size_bytes": path.stat().st_size, **LiteRTModel(path).describe()}
