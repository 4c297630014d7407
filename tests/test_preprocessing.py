"""The numpy preprocessing families against Keras' own ``preprocess_input`` functions."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from litequant.core.preprocessing import APPLICATION_FAMILIES, preprocess


def _keras_preprocess_input(application: str):
    """``keras.applications.<module>.preprocess_input`` of the module defining ``application``."""
    import keras

    module = getattr(keras.applications, application).__module__.rsplit(".", 1)[1]
    return importlib.import_module(f"keras.applications.{module}").preprocess_input


@pytest.mark.parametrize("application", sorted(APPLICATION_FAMILIES))
def test_family_matches_keras_preprocess_input(application: str) -> None:
    pixels = np.random.default_rng(7).integers(0, 256, (2, 9, 11, 3), dtype=np.uint8)
    expected = np.asarray(_keras_preprocess_input(application)(pixels.astype(np.float32)))
    ours = preprocess(pixels, APPLICATION_FAMILIES[application])
    assert ours.dtype == np.float32 and ours.shape == pixels.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-4)


def test_families_differ_on_the_same_pixels() -> None:
    # guards the test above against a Keras version whose functions all became identities
    pixels = np.full((1, 2, 2, 3), 200, dtype=np.uint8)
    outputs = {family: preprocess(pixels, family) for family in ("tf", "caffe", "torch", "raw")}
    assert len({o.tobytes() for o in outputs.values()}) == 4
