"""What a base or a pass may read besides the model it is given (:class:`PassInputs`), and the
calibration inputs it is built from (:func:`calibration_inputs`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from litequant.core.arrays import NpyRows
from litequant.core.errors import PipelineError
from litequant.core.params import CalibrationParams
from litequant.core.preprocessing import preprocess


@dataclass(frozen=True)
class PassInputs:
    """The inputs of one variant's conversion, handed to its base and to each pass.

    Attributes:
        saved_model: the exported SavedModel (TensorFlow's converter reads it).
        float32_model: returns the float32 variant's ``.tflite`` bytes (read on first use);
            raises ``RuntimeError`` when float32 did not convert.
        calibration: ``float32`` ``(N, h, w, 3)`` representative inputs in the model's input
            range (the calibration images preprocessed exactly as for evaluation, or the noise
            ``calibration.source`` asks for), or ``None`` for a variant that needs none.
        real_calibration: the same ``N`` calibration images, always real (what a selection is
            judged on even when the variant is calibrated on noise), or ``None`` unless the
            variant needs them (:data:`~litequant.quantize.registry.REAL_CALIBRATION`).
        calibration_params: the ``calibration`` section, or ``None``.
        settings: the params section a base declares (``convert.selection``), or ``None``.
        output_kind: ``probabilities`` or ``logits`` (``model.json``'s ``output``).
    """

    saved_model: Path
    float32_model: Callable[[], bytes]
    calibration: np.ndarray | None = None
    real_calibration: np.ndarray | None = None
    calibration_params: CalibrationParams | None = None
    settings: Any = None
    output_kind: str = "probabilities"


#: What a base returns: the model, fields for ``conversion.json``, and extra files to write
#: beside the model (``{file name: text, or data written as JSON}``).
BaseResult = tuple[bytes, dict[str, Any], dict[str, Any]]


def calibration_inputs(calibration_images: np.ndarray | NpyRows, params: CalibrationParams,
                       family: str) -> np.ndarray:
    """The representative inputs: ``float32`` ``(num_images, h, w, 3)`` in the model's range.

    Args:
        calibration_images: ``uint8`` ``(N, h, w, 3)`` RGB 0..255, the prepared calibration
            split (disjoint from the evaluation split); only the ``num_images`` chosen rows
            are read.
        params: ``images`` takes the first ``num_images`` after a seeded permutation,
            preprocessed exactly as evaluation images are; ``random_normal``/``random_uniform``
            give standard normal / uniform [0, 1) noise of the same shape (what many tutorials
            do; not representative).
        family: the model's preprocessing family.
    """
    if params.num_images > len(calibration_images):
        raise PipelineError(f"params.yaml: calibration.num_images={params.num_images} is larger "
                            f"than the calibration split ({len(calibration_images)} images, "
                            "fetch.calibration_size)")
    rng = np.random.default_rng(params.seed)
    shape = (params.num_images, *calibration_images.shape[1:])
    if params.source == "random_normal":
        return rng.standard_normal(shape).astype(np.float32)
    if params.source == "random_uniform":
        return rng.random(shape, dtype=np.float32)
    chosen = np.sort(rng.permutation(len(calibration_images))[:params.num_images])
    return preprocess(calibration_images[chosen], family)
