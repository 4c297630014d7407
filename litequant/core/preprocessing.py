"""Preprocessing per model family: from decoded ``uint8`` RGB pixels to the model's input range.

These are numpy re-implementations of ``keras.applications.*.preprocess_input`` so that stages
which only run TFLite models never import TensorFlow. ``tests/test_preprocessing.py`` checks them
against Keras' own functions. Numpy only: imports nothing of the project.

Families:
    ``tf``     scale to [-1, 1]: ``x / 127.5 - 1`` (MobileNet, MobileNetV2, Inception, Xception).
    ``caffe``  RGB→BGR, subtract the ImageNet BGR mean, no scaling (ResNet50, VGG).
    ``torch``  scale to [0, 1], then normalise with the ImageNet mean/std (DenseNet).
    ``raw``    float pixels 0..255 unchanged: the model rescales internally (EfficientNet,
               MobileNetV3, ConvNeXt, ResNetV2-RS...).
"""

from __future__ import annotations

import numpy as np

FAMILIES = ("tf", "caffe", "torch", "raw")

_CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

#: Preprocessing family of each ``keras.applications`` classifier supported by ``export``.
APPLICATION_FAMILIES: dict[str, str] = {
    "MobileNet": "tf",
    "MobileNetV2": "tf",
    "MobileNetV3Small": "raw",
    "MobileNetV3Large": "raw",
    "EfficientNetB0": "raw",
    "EfficientNetB1": "raw",
    "EfficientNetB2": "raw",
    "EfficientNetB3": "raw",
    "EfficientNetV2B0": "raw",
    "EfficientNetV2B1": "raw",
    "ResNet50": "caffe",
    "ResNet101": "caffe",
    "ResNet152": "caffe",
    "ResNet50V2": "tf",
    "InceptionV3": "tf",
    "Xception": "tf",
    "DenseNet121": "torch",
    "NASNetMobile": "tf",
    "ConvNeXtTiny": "raw",
}


def preprocess(pixels: np.ndarray, family: str) -> np.ndarray:
    """Map decoded pixels to the model's input range.

    Args:
        pixels: ``uint8`` (or float) array ``(..., height, width, 3)``, RGB, values 0..255.
        family: one of :data:`FAMILIES`.

    Returns:
        ``float32`` array of the same shape in the family's range (see module docstring).
    """
    x = np.asarray(pixels, dtype=np.float32)
    if x.shape[-1:] != (3,):
        raise ValueError(f"expected RGB pixels with 3 channels last, got shape {x.shape}")
    if family == "tf":
        return x / np.float32(127.5) - np.float32(1.0)
    if family == "caffe":
        return x[..., ::-1] - _CAFFE_BGR_MEAN
    if family == "torch":
        return (x / np.float32(255.0) - _TORCH_MEAN) / _TORCH_STD
    if family == "raw":
        return x
    raise ValueError(f"unknown preprocessing family {family!r}; expected one of {FAMILIES}")


def source_channels(family: str) -> tuple[int, int, int]:
    """For each output channel, the input (RGB) channel it is computed from.

    ``(2, 1, 0)`` for ``caffe`` (RGB→BGR), ``(0, 1, 2)`` otherwise.
    """
    return (2, 1, 0) if family == "caffe" else (0, 1, 2)


def pixel_table(family: str) -> np.ndarray:
    """Every possible output value of :func:`preprocess`, as a lookup table.

    Each family maps every channel independently, so the whole transform is a table:
    ``preprocess(x, family)[..., c] == pixel_table(family)[x[..., source_channels(family)[c]], c]``
    exactly (same float32 arithmetic).

    Returns:
        ``float32`` ``(256, 3)``: row ``v`` is the output for pixel value ``v`` in each channel.
    """
    values = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    return preprocess(values, family)
