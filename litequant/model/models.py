"""The float Keras classifier: built from ``keras.applications`` or loaded from a user's
``.keras`` file (safe mode) or SavedModel, checked against its label space, saved for conversion
(:func:`export`, what stage ``export`` runs: ``python -m stages.export --help`` lists its outputs)
and run on the evaluation images as the accuracy baseline (:func:`keras_probabilities`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from litequant.core import atomic
from litequant.core.arrays import NpyRows
from litequant.core.errors import PipelineError, relative_path_hint
from litequant.core.metrics import class_probabilities
from litequant.core.offline import OFFLINE_HELP, network_reachable
from litequant.core.params import ModelParams
from litequant.core.preprocessing import APPLICATION_FAMILIES, preprocess
from litequant.core.quiet import progress_counter
from litequant.data.labels import NUM_CLASSES, model_labels

WEIGHTS_HOST = "storage.googleapis.com"

#: Applications whose constructor takes ``alpha`` (width multiplier).
_ALPHA_APPLICATIONS = {"MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large"}

#: Keras' default model names (``model.name``) → the preprocessing family, used to pick the
#: family of a user ``.keras`` file saved from ``keras.applications`` when
#: ``model.preprocessing`` is ``auto``.
_NAME_FAMILIES = (
    (re.compile(r"^mobilenetv2_"), "tf"),
    (re.compile(r"^mobilenet_"), "tf"),
    (re.compile(r"^mobilenetv3"), "raw"),
    # keras.applications' EfficientNet/V2 rescale inside the model; other EfficientNets (e.g.
    # EfficientNet-Lite ports) do not: their name says nothing of their input range.
    (re.compile(r"^efficientnet(b\d|v2)"), "raw"),
    (re.compile(r"^resnet(50|101|152)$"), "caffe"),
    (re.compile(r"^resnet\d+v2$"), "tf"),
    (re.compile(r"^densenet"), "torch"),
)


def _keras():
    import keras

    return keras


def _weights_argument(params: ModelParams) -> str | None:
    if params.weights == "random":
        _keras().utils.set_random_seed(0)  # random weights, but the same ones every run
        return None
    if params.weights == "imagenet":
        cached = Path.home() / ".keras" / "models"
        if not network_reachable(WEIGHTS_HOST) and not any(cached.glob("*.h5")):
            raise PipelineError(
                f"export: model.weights is 'imagenet' but {WEIGHTS_HOST} is unreachable (no "
                f"network) and no Keras weights are cached in {cached}.\n{OFFLINE_HELP}")
        return "imagenet"
    path = Path(params.weights)
    if not path.is_file():
        raise PipelineError(f"model.weights: {path} not found{relative_path_hint(path)} "
                            f"(expected 'imagenet', 'random' or "
                            "the path of a Keras .weights.h5 file)")
    if not path.name.endswith(".h5"):
        raise PipelineError(f"model.weights: {path} is not a Keras weights file (*.weights.h5)")
    return str(path)


def _refusal(text: str, params: ModelParams) -> str:
    """Keras's reason for refusing a model, as one line that ends in a fix.

    A weights file of another width or input size fails with "A total of N objects could not be
    loaded. Example error message for object <Conv2D name=Conv1>:" and the shapes further down;
    that first line alone would end in a dangling colon.
    """
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", text)
    if "could not be loaded" in text and shapes:
        layer = re.search(r"name=([\w/.-]+)", text)
        return (f"the weights file does not fit this architecture (layer "
                f"{layer.group(1) if layer else '?'} has shape {shapes.group(1)}, the file "
                f"{shapes.group(2)}): set model.alpha and model.input_size to the ones the "
                "weights were saved with, or use weights saved for these")
    lines = [line.strip().rstrip(":") for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no reason given"


def build_application(params: ModelParams):
    """A ``keras.applications`` classifier with a softmax output over the 1000 classes."""
    keras = _keras()
    constructor = getattr(keras.applications, params.application, None)
    if constructor is None:
        raise PipelineError(f"model.name: keras.applications has no {params.application!r}")
    size = params.input_size or 224
    kwargs: dict[str, Any] = {"input_shape": (size, size, 3), "classes": NUM_CLASSES,
                              "classifier_activation": "softmax",
                              "weights": _weights_argument(params)}
    if params.application in _ALPHA_APPLICATIONS:
        kwargs["alpha"] = params.alpha
    try:
        return constructor(**kwargs)
    except ValueError as error:
        raise PipelineError(f"model: keras.applications.{params.application} refused "
                            f"alpha={params.alpha}, input_size={size}, weights={params.weights}: "
                            f"{_refusal(str(error), params)}") from None
    except Exception as error:
        message = str(error).splitlines()[0] if str(error) else repr(error)
        if "URL fetch failure" in message or "Name or service" in message:
            raise PipelineError(f"export: could not download ImageNet weights for "
                                f"{params.application} ({message}).\n{OFFLINE_HELP}") from None
        raise


def load_user_model(path: str):
    """Load a user's ``.keras`` file with safe mode on (no embedded code is executed)."""
    keras = _keras()
    model_path = Path(path)
    if not model_path.exists():
        raise PipelineError(f"model.source: {model_path} not found"
                            f"{relative_path_hint(model_path)} (expected 'applications' or "
                            "the path of a .keras file)")
    if model_path.name.endswith(".weights.h5"):
        raise PipelineError(f"model.source: {model_path} holds weights only, not a model: keep "
                            "model.source: applications, set model.name to its architecture "
                            f"and model.weights: {model_path}")
    if model_path.suffix in (".h5", ".hdf5"):
        raise PipelineError(f"model.source: {model_path} is a legacy HDF5 full model; litequant "
                            "reads the .keras format only: re-save it once with "
                            f"keras.models.load_model('{model_path}').save('model.keras') and "
                            "set model.source to that file")
    if model_path.suffix != ".keras":
        raise PipelineError(f"model.source: {model_path} is not a .keras file")
    try:
        return keras.models.load_model(model_path, compile=False, safe_mode=True)
    except Exception as error:
        text = str(error)
        if "safe_mode" in text:
            raise PipelineError(
                f"model.source: {model_path} embeds Python code (a Lambda layer with a "
                "serialized function); refused, because user models are loaded in Keras safe "
                "mode so a model file never runs code. Rebuild the model without Lambda layers "
                "(built-in or registered custom layers only)") from None
        # Keras nests the root cause as "... Exception encountered: <cause>"; show that.
        cause = text.rsplit("Exception encountered:", 1)[-1].strip()
        message = cause.splitlines()[0] if cause else repr(error)
        raise PipelineError(f"model.source: cannot load {model_path} as a Keras model "
                            f"({message})") from None


def load_saved_model(path: str):
    """Wrap a SavedModel directory's ``serving_default`` signature as a one-input Keras model.

    The signature must take one image tensor ``(batch, height, width, 3)`` with a fixed height
    and width and return one tensor of class scores ``(batch, 1000)``.
    """
    import tensorflow as tf

    keras = _keras()
    directory = Path(path)
    try:
        signature = tf.saved_model.load(str(directory)).signatures["serving_default"]
    except KeyError:
        raise PipelineError(f"model.source: SavedModel {directory} has no 'serving_default' "
                            "signature") from None
    except Exception as error:
        message = str(error).splitlines()[0] if str(error) else repr(error)
        raise PipelineError(f"model.source: cannot load {directory} as a SavedModel "
                            f"({message})") from None
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1 or len(signature.structured_outputs) != 1:
        raise PipelineError(f"model.source: SavedModel {directory} must take one image input "
                            f"and return one output, its serving_default signature takes "
                            f"{sorted(inputs)} and returns {sorted(signature.structured_outputs)}")
    (spec,) = inputs.values()
    image = keras.Input(shape=tuple(spec.shape[1:]), batch_size=None, dtype=spec.dtype.name)
    outputs = keras.layers.TFSMLayer(str(directory), call_endpoint="serving_default")(image)
    if isinstance(outputs, dict):
        (outputs,) = outputs.values()
    # the prefix keeps model.preprocessing 'auto' from guessing a family from a folder name
    return keras.Model(image, outputs, name=f"saved_model_{directory.name}")


def describe(model, params: ModelParams) -> dict[str, Any]:
    """Check the model is a classifier on ``HxWx3`` images of ``model.labels``' classes and
    describe it.

    Returns the ``model.json`` content: ``name``, ``source``, ``input_size`` ``[h, w]``,
    ``preprocessing`` family, ``num_classes`` (2 for one sigmoid output), ``outputs`` (units),
    ``labels`` (:func:`litequant.data.labels.model_labels`), ``output`` (``probabilities`` or
    ``logits``), ``parameters`` and ``layers`` (the Keras layer names in model order, which
    ``layer_errors`` finds in the converted tensors' names).
    """
    where = (f"model.source: {params.source}" if params.source != "applications"
             else f"model.name: {params.application}")
    input_shape = tuple(model.inputs[0].shape) if len(model.inputs) == 1 else None
    if input_shape is None or len(input_shape) != 4 or input_shape[-1] != 3 \
            or None in input_shape[1:3]:
        raise PipelineError(f"{where}: expected one image input of shape (batch, height, width, "
                            f"3) with a fixed size, got {[tuple(i.shape) for i in model.inputs]}")
    output_shape = tuple(model.outputs[0].shape) if len(model.outputs) == 1 else None
    if output_shape is None or len(output_shape) != 2 or output_shape[-1] is None:
        raise PipelineError(f"{where}: expected one output of class scores (batch, classes), "
                            f"got {[tuple(o.shape) for o in model.outputs]}")
    units = int(output_shape[-1])
    classes = 2 if units == 1 else units  # one sigmoid unit: two classes (1 - p, p)
    labels = model_labels(params.labels, classes, where)
    if params.source == "applications":
        family = APPLICATION_FAMILIES[params.application] if params.preprocessing == "auto" \
            else params.preprocessing
    elif params.preprocessing != "auto":
        family = params.preprocessing
    else:
        family = next((f for pattern, f in _NAME_FAMILIES if pattern.match(model.name)), None)
        if family is None:
            raise PipelineError(
                f"model.preprocessing: cannot tell the preprocessing of {params.source} "
                f"(model name {model.name!r}); set model.preprocessing to one of tf, caffe, "
                "torch, raw")
    probe = np.random.default_rng(0).uniform(-1, 1, (2, *input_shape[1:])).astype(np.float32)
    scores = np.asarray(model(probe, training=False))
    if units == 1:  # a sigmoid probability, or a binary logit
        is_distribution = bool(np.all((scores >= 0) & (scores <= 1)))
    else:
        is_distribution = bool(np.all(scores >= 0)
                               and np.allclose(scores.sum(-1), 1.0, atol=1e-3))
    return {
        "name": model.name if params.source != "applications" else params.application,
        "source": params.source,
        "input_size": [int(input_shape[1]), int(input_shape[2])],
        "preprocessing": family,
        "num_classes": classes,
        "outputs": units,
        "labels": labels,
        "output": "probabilities" if is_distribution else "logits",
        "parameters": int(model.count_params()),
        "layers": [layer.name for layer in model.layers],
    }


def export(params: ModelParams, output: Path) -> dict[str, Any]:
    """Build or load the float model and write ``output`` (see module docstring)."""
    saved_model = params.source != "applications" and Path(params.source).is_dir()
    if params.source == "applications":
        model = build_application(params)
    elif saved_model:
        model = load_saved_model(params.source)
    else:
        model = load_user_model(params.source)
    info = describe(model, params)
    info["format"] = "saved_model" if saved_model else "keras"
    if params.source != "applications" and params.input_size not in (None, *info["input_size"]):
        print(f"export: model.input_size={params.input_size} is ignored for a user model; its "
              f"input size is {info['input_size'][0]}x{info['input_size'][1]}")
    with atomic.output_folder(output) as tmp:
        if not saved_model:  # a SavedModel is kept as one; a TFSMLayer is not safe-mode loadable
            model.save(tmp / "model.keras")
        model.export(str(tmp / "saved_model"), format="tf_saved_model", verbose=False)
        atomic.write_json(tmp / "model.json", info)
    print(f"export: {info['name']} {info['input_size'][0]}x{info['input_size'][1]}, "
          f"{info['parameters']:,} parameters, preprocessing '{info['preprocessing']}'")
    return info


def load_exported(info: dict[str, Any], keras_model: Path, saved_model: Path):
    """The exported float model, ready to call: ``model.keras`` (safe mode), or for a user
    SavedModel (``info["format"] == "saved_model"``) its ``serving_default`` signature."""
    keras = _keras()
    if info.get("format") == "saved_model":
        if not saved_model.is_dir():
            raise PipelineError(f"{saved_model} not found: run the export stage first")
        return keras.layers.TFSMLayer(str(saved_model), call_endpoint="serving_default")
    if not keras_model.is_file():
        raise PipelineError(f"{keras_model} not found: run the export stage first")
    return keras.models.load_model(keras_model, compile=False, safe_mode=True)


#: Images per call of the float Keras model.
KERAS_BATCH_SIZE = 32


def keras_probabilities(model, images: np.ndarray | NpyRows, family: str, output_kind: str
                        ) -> Iterator[np.ndarray]:
    """Run the float model on the evaluation images, :data:`KERAS_BATCH_SIZE` at a time.

    Args:
        model: the float model (:func:`load_exported`).
        images: ``uint8`` ``(N, h, w, 3)``, RGB 0..255 (an array or a prepared split on disk,
            read one batch of rows at a time).
        family: the preprocessing family (:mod:`litequant.core.preprocessing`).
        output_kind: ``probabilities`` (kept) or ``logits`` (softmaxed); a single sigmoid
            output becomes two columns ``(1 - p, p)``.

    Yields:
        ``float32`` ``(n, C)`` probabilities of the next ``n`` images in order, rows summing to
        1; only one batch is in memory. Shows images/s and the ETA on a terminal.
    """
    with progress_counter("keras", len(images)) as update:
        for start in range(0, len(images), KERAS_BATCH_SIZE):
            x = preprocess(images[start:start + KERAS_BATCH_SIZE], family)
            scores = model(x, training=False)
            if isinstance(scores, dict):  # a SavedModel signature names its one output
                (scores,) = scores.values()
            scores = np.asarray(scores, dtype=np.float32)
            update(len(scores))
            yield class_probabilities(scores, output_kind)
