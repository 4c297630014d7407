"""The LiteRT runner: one interpreter per model, batched invokes, input quantization with the
model's own scale/zero point, output dequantization. Imports ``ai_edge_litert`` and numpy only
(never TensorFlow), so stages that only run TFLite models start fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from litequant.core.errors import PipelineError
from litequant.core.preprocessing import pixel_table, source_channels
from litequant.core.quiet import native_stderr_silenced


@dataclass(frozen=True)
class TensorSpec:
    """What a model's input or output tensor expects.

    ``dtype`` is the numpy dtype of the tensor; ``scale``/``zero_point`` are its (per-tensor)
    quantization parameters, ``scale == 0`` for float tensors; ``shape`` is the signature with
    ``-1`` for dynamic dimensions.
    """

    index: int
    dtype: np.dtype
    scale: float
    zero_point: int
    shape: tuple[int, ...]

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(self.dtype, np.integer)

    def describe(self) -> dict[str, Any]:
        """JSON-ready ``dtype``, ``scale``, ``zero_point``, ``shape`` (as in conversion.json)."""
        return {"dtype": self.dtype.name, "scale": self.scale, "zero_point": self.zero_point,
                "shape": list(self.shape)}


def quantize(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Real values → the tensor's dtype: ``round(x / scale + zero_point)`` clipped to the dtype.

    Float tensors get a plain cast. This is the only correct way to feed an integer model:
    casting raw pixels to int8 (as many tutorials do) ignores scale and zero point.
    """
    if not spec.quantized:
        return np.asarray(values, dtype=spec.dtype)
    info = np.iinfo(spec.dtype)
    scaled = np.round(np.asarray(values, dtype=np.float64) / spec.scale + spec.zero_point)
    return np.clip(scaled, info.min, info.max).astype(spec.dtype)


def dequantize(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """The tensor's values → real ``float32``: ``(q - zero_point) * scale``."""
    if not spec.quantized:
        return np.asarray(values, dtype=np.float32)
    return ((values.astype(np.float32) - np.float32(spec.zero_point))
            * np.float32(spec.scale)).astype(np.float32)


def pixels_to_input(pixels: np.ndarray, spec: TensorSpec, family: str) -> np.ndarray:
    """Decoded pixels → the model's input tensor, preprocessed and quantized in one lookup.

    Equal to ``quantize(preprocess(pixels, family), spec)`` element for element, but computed
    by indexing a ``(256, 3)`` table (:func:`litequant.core.preprocessing.pixel_table`, quantized
    with the input's own scale/zero point), one channel at a time with ``np.take``, so no float copy
    of the batch is made.

    Args:
        pixels: ``uint8`` ``(..., height, width, 3)``, RGB 0..255.
        spec: the model's input tensor.
        family: the preprocessing family (:mod:`litequant.core.preprocessing`).

    Returns:
        array of ``spec.dtype``, same shape as ``pixels``.
    """
    if pixels.dtype != np.uint8:
        raise PipelineError(f"expected uint8 pixels, got {pixels.dtype}")
    table = quantize(pixel_table(family), spec)
    result = np.empty(pixels.shape, dtype=table.dtype)
    for channel, source in enumerate(source_channels(family)):
        result[..., channel] = np.take(table[:, channel], pixels[..., source])
    return result


def tensor_spec(detail: dict) -> TensorSpec:
    """The :class:`TensorSpec` of one entry of an interpreter's tensor details."""
    scale, zero_point = detail.get("quantization", (0.0, 0))
    signature = detail.get("shape_signature")
    if signature is None or len(signature) == 0:
        signature = detail["shape"]
    return TensorSpec(index=int(detail["index"]), dtype=np.dtype(detail["dtype"]),
                      scale=float(scale), zero_point=int(zero_point),
                      shape=tuple(int(d) for d in signature))


def intermediate_tensors(model_bytes: bytes, inputs: np.ndarray, tensors: list[int]
                         ) -> Iterator[list[np.ndarray]]:
    """Run a ``.tflite`` model on one input at a time and read some of its inner tensors.

    Args:
        model_bytes: the model.
        inputs: ``float32`` ``(N, ...)`` model inputs in real units (quantized with the input's
            own scale and zero point for an integer input).
        tensors: tensor indices of subgraph 0 (any tensor, not only outputs).

    Yields:
        per input, one ``float32`` array per tensor, dequantized, with its batch axis of 1. The
        interpreter keeps every tensor (``experimental_preserve_all_tensors``) and runs without
        delegates, which would not.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with native_stderr_silenced():
        interpreter = Interpreter(
            model_content=model_bytes, num_threads=1, experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interpreter.allocate_tensors()
    source = tensor_spec(interpreter.get_input_details()[0])
    specs = {d["index"]: tensor_spec(d) for d in interpreter.get_tensor_details()}
    for sample in inputs:
        interpreter.set_tensor(source.index, quantize(np.asarray(sample)[None], source))
        interpreter.invoke()
        yield [dequantize(interpreter.get_tensor(index), specs[index]) for index in tensors]


class LiteRTModel:
    """A ``.tflite`` image classifier run with ``ai_edge_litert``.

    Args:
        path: the ``.tflite`` file.
        threads: interpreter threads (``num_threads``).
        batch_size: images per invoke when the model's batch dimension is dynamic; models with a
            fixed batch of 1 are invoked image by image.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1, batch_size: int = 32,
                 model_content: bytes | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if model_content is None and not self.path.is_file():
            raise PipelineError(f"{self.path}: TFLite model file not found")
        source = ({"model_content": model_content} if model_content is not None
                  else {"model_path": str(self.path)})
        try:
            with native_stderr_silenced():
                self.interpreter = Interpreter(**source, num_threads=int(threads))
        except (ValueError, RuntimeError) as error:
            raise PipelineError(f"{self.path}: not a loadable TFLite model ({error})") from None
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise PipelineError(f"{self.path}: expected one input and one output tensor, got "
                                f"{len(inputs)} inputs and {len(outputs)} outputs")
        self.input = tensor_spec(inputs[0])
        self.output = tensor_spec(outputs[0])
        if len(self.input.shape) != 4 or self.input.shape[-1] != 3:
            raise PipelineError(f"{self.path}: input shape {self.input.shape} is not "
                                "(batch, height, width, 3)")
        self.dynamic_batch = self.input.shape[0] == -1
        self.batch_size = int(batch_size) if self.dynamic_batch else 1
        self._allocated_batch = 0

    def describe(self) -> dict[str, Any]:
        """``{"input": ..., "output": ...}`` tensor descriptions (:meth:`TensorSpec.describe`)."""
        return {"input": self.input.describe(), "output": self.output.describe()}

    def smoke_test(self) -> None:
        """Allocate and invoke once on a zero input: proves LiteRT can run the model.

        Raises ``RuntimeError``/``ValueError`` with LiteRT's message when it cannot.
        """
        shape = [1 if d == -1 else d for d in self.input.shape]
        self.invoke_raw(np.zeros(shape, dtype=self.input.dtype))

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` the model expects."""
        return self.input.shape[1], self.input.shape[2]

    def _allocate(self, batch: int) -> None:
        if batch == self._allocated_batch:
            return
        with native_stderr_silenced():
            if self.dynamic_batch:
                self.interpreter.resize_tensor_input(
                    self.input.index, [batch, *self.input.shape[1:]], strict=True)
            self.interpreter.allocate_tensors()
        self._allocated_batch = batch

    def invoke_raw(self, batch: np.ndarray) -> np.ndarray:
        """Invoke once on an already-quantized batch; returns the raw output tensor (a copy)."""
        self._allocate(batch.shape[0])
        self.interpreter.set_tensor(self.input.index, batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output.index).copy()

    def predict(self, images: np.ndarray, family: str,
                on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Run the model on decoded images.

        Args:
            images: ``uint8`` ``(N, height, width, 3)``, RGB 0..255; mapped to the model
                family's input range and, for an integer input, quantized with the input's own
                scale and zero point (:func:`pixels_to_input`), one batch at a time.
            family: the preprocessing family (:mod:`litequant.core.preprocessing`).
            on_batch: called with the number of images after each invoke (progress bars).

        Returns:
            ``float32`` ``(N, num_outputs)``, dequantized model outputs.
        """
        if images.ndim != 4 or tuple(images.shape[1:3]) != self.image_size:
            raise PipelineError(f"{self.path}: expects images of size {self.image_size}, "
                                f"got array of shape {images.shape}")
        results = []
        for chunk in self.batches(images, family):
            results.append(dequantize(self.invoke_raw(chunk), self.output))
            if on_batch is not None:
                on_batch(len(chunk))
        if not results:
            return np.zeros((0, self.output.shape[-1]), dtype=np.float32)
        return np.concatenate(results, axis=0).reshape(len(images), -1)

    def batches(self, images: np.ndarray, family: str) -> Iterator[np.ndarray]:
        """The input batches :meth:`predict` invokes on (preprocessed, quantized)."""
        for start in range(0, len(images), self.batch_size):
            yield pixels_to_input(images[start:start + self.batch_size], self.input, family)


# --- evaluation across worker processes --------------------------------------------------------

_SHARED: dict[str, object] = {}


def _worker_chunk(bounds: tuple[int, int]) -> tuple[int, np.ndarray]:
    model = _SHARED.get("model")
    if model is None:
        model = LiteRTModel(_SHARED["path"], threads=1, batch_size=_SHARED["batch_size"])
        _SHARED["model"] = model
    start, stop = bounds
    return start, model.predict(_SHARED["images"][start:stop], _SHARED["family"])


def predict_chunks(path: str | os.PathLike, images: np.ndarray, family: str, workers: int,
                   batch_size: int = 32) -> Iterator[tuple[int, np.ndarray]]:
    """Run the model on ``images`` a chunk at a time, split across ``workers`` processes.

    Args:
        images: ``uint8`` ``(N, height, width, 3)`` RGB 0..255: an array, or anything indexed
            by row slices like one, such as a prepared split on disk
            (:class:`~litequant.core.arrays.NpyRows`), of which each worker reads only its chunks.

    Yields:
        ``(start, scores)``: the ``float32`` dequantized outputs ``(n, num_outputs)`` of rows
        ``start:start + n``, in completion order (not necessarily by ``start``); only the
        chunks in flight are in memory, never all ``N`` rows.

    Each process holds one single-threaded interpreter for the whole run; the images (or the
    reader) are handed to the workers by ``fork``, never copied. Batch-level parallelism also
    speeds up models whose kernels are single-threaded (int16x8 runs on reference kernels).
    ``workers=1`` runs in this process.
    """
    if workers <= 1 or len(images) < 2:
        model = LiteRTModel(path, threads=1, batch_size=batch_size)
        step = max(1, int(batch_size))
        for start in range(0, len(images), step):
            yield start, model.predict(images[start:start + step], family)
        return
    import multiprocessing

    LiteRTModel(path, threads=1)  # validate in this process for a clean error
    chunk = max(1, min(batch_size, -(-len(images) // workers)))
    bounds = [(s, min(s + chunk, len(images))) for s in range(0, len(images), chunk)]
    _SHARED.clear()
    _SHARED.update(path=str(path), images=images, family=family, batch_size=batch_size)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            yield from pool.imap_unordered(_worker_chunk, bounds)
    finally:
        _SHARED.clear()
