"""Stage ``export``: the float Keras classifier, saved for conversion and as the accuracy baseline.

Reads ``params.yaml`` section ``model`` and writes ``data/export/``:

* ``model.keras``: the float Keras model;
* ``saved_model/``: a TensorFlow SavedModel (``model.export``) with a dynamic batch dimension,
  which ``convert`` reads with ``TFLiteConverter.from_saved_model``;
* ``model.json``: the input size, preprocessing family, number of classes (2 for a single
  sigmoid output), the label space as far as the model decides it (``model.labels``,
  :mod:`litequant.data.labels`) and whether the output is already a probability distribution
  (softmax or sigmoid) or logits.

Reads ``model.labels`` too: ``imagenet`` needs 1000 outputs and a label file one line per class;
a mismatch stops here with one line naming both counts, before anything is written.

``model.source`` is ``applications`` (a ``keras.applications`` classifier named by
``model.name``, with ``model.alpha``, ``model.input_size`` and ``model.weights``: ``imagenet``
for the normal Keras download, a local ``.weights.h5`` file, or ``random`` for tests) or the path
of a user's model: a ``.keras`` file or a TensorFlow SavedModel directory (its ``serving_default``
signature; no ``model.keras`` is written for it and ``evaluate_keras`` runs the SavedModel). A
user model's input size is read from the model (``model.input_size`` applies to
``keras.applications`` only) and its preprocessing is ``model.preprocessing`` (``auto`` works for
``.keras`` files saved from ``keras.applications``, which keep Keras' default model names).
User ``.keras`` files are loaded with Keras' safe mode on, so they can never execute embedded
code (Lambda layers with pickled functions are refused).
"""

from __future__ import annotations

from litequant.core import layout
from litequant.core.cli import run_stage
from litequant.core.params import ModelParams, read_section
from litequant.model.models import export


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, lambda args: export(read_section(ModelParams, args.params),
                                                  layout.EXPORT_DIR), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
