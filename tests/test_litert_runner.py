"""The LiteRT runner's input quantization and output dequantization, against hand values."""

from __future__ import annotations

import numpy as np
import pytest

from litequant.core.litert import TensorSpec, dequantize, pixels_to_input, quantize
from litequant.core.preprocessing import FAMILIES, preprocess


def spec(dtype: type, scale: float = 0.0, zero_point: int = 0) -> TensorSpec:
    return TensorSpec(index=0, dtype=np.dtype(dtype), scale=scale, zero_point=zero_point,
                      shape=(-1, 4, 4, 3))


def test_quantize_uses_scale_and_zero_point_and_clips() -> None:
    int8 = spec(np.int8, scale=0.5, zero_point=-10)
    # x / 0.5 - 10: 1.0 -> -8, -1.0 -> -12, 100 -> clipped at 127, -100 -> clipped at -128
    values = np.array([1.0, -1.0, 100.0, -100.0, 0.26], dtype=np.float32)
    assert quantize(values, int8).tolist() == [-8, -12, 127, -128, -9]
    assert quantize(values, int8).dtype == np.int8


def test_dequantize_inverts_quantize_on_the_grid() -> None:
    uint8 = spec(np.uint8, scale=1 / 128, zero_point=128)
    q = np.array([0, 128, 255], dtype=np.uint8)
    assert dequantize(q, uint8).tolist() == [-1.0, 0.0, 127 / 128]
    assert np.array_equal(quantize(dequantize(q, uint8), uint8), q)


def test_float_tensors_pass_through() -> None:
    values = np.array([0.1, -2.5], dtype=np.float64)
    assert quantize(values, spec(np.float32)).dtype == np.float32
    assert dequantize(values.astype(np.float32), spec(np.float32)).tolist() == \
        values.astype(np.float32).tolist()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("tensor", [spec(np.float32), spec(np.int8, 0.0078125, 0),
                                    spec(np.uint8, 1 / 128, 128), spec(np.int16, 3e-5, 0)],
                         ids=["float32", "int8", "uint8", "int16"])
def test_pixel_lookup_equals_preprocess_then_quantize(family: str, tensor: TensorSpec) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    expected = quantize(preprocess(pixels, family), tensor)
    got = pixels_to_input(pixels, tensor, family)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_raw_pixel_cast_is_not_what_an_int8_model_gets() -> None:
    # The tutorial mistake: casting pixels to int8 instead of quantizing the preprocessed value.
    pixels = np.array([[[[0, 128, 255]]]], dtype=np.uint8)
    int8 = spec(np.int8, scale=1 / 127.5, zero_point=-1)
    assert pixels_to_input(pixels, int8, "tf").tolist() == [[[[-128, 0, 126]]]]
    assert pixels.astype(np.int8).tolist() == [[[[0, -128, -1]]]]
