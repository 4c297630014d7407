"""The label space: the class names of a classifier's outputs, in output order, and how the
classes of an image source map onto them.

``model.labels`` decides it:

* ``imagenet``: the 1000 ImageNet-1k classes of the shipped table; the source names its classes
  by WordNet synset (``n01440764/`` folders, ImageNet-style tfds datasets);
* ``folders``: the class folders of a ``folder`` source sorted by name, the order in which
  ``keras.utils.image_dataset_from_directory`` assigns indices;
* ``dataset``: the ``ClassLabel`` names of a ``tfds`` source, in the dataset's label order;
* anything else: the path of a text file with one class name per line (line ``i`` names output
  ``i``); every class of the source must be one of its names.

Two stages contribute: ``export`` knows the model's output count and checks it against
``imagenet`` (1000) or the label file (:func:`model_labels`, written to ``model.json``);
``prepare`` knows the source's classes too (``fetch.json``) and resolves each image's label
index (:func:`resolve`), checking ``folders``/``dataset`` against the output count. A model with
a single (sigmoid) output has two classes: index 0 is ``1 - p``, index 1 is ``p``, Keras'
binary convention (``label_mode="binary"`` makes the second sorted folder class 1).

The ImageNet-1k class table ships with the package (``imagenet_classes.tsv``: index, WordNet
synset, name); the index is the position of the synset in sorted order, i.e. the output index of
every Keras ImageNet classifier.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from litequant.core.errors import PipelineError

IMAGENET = "imagenet"
FOLDERS = "folders"
DATASET = "dataset"
#: ``model.labels`` values that name a label space rather than a label file.
NAMED_SPACES = (IMAGENET, FOLDERS, DATASET)
#: The ``fetch.source`` whose own classes ``folders`` and ``dataset`` take.
SOURCE_OF = {FOLDERS: "folder", DATASET: "tfds"}
#: The per-class view (table and confusion plot) is written up to this many classes.
PER_CLASS_LIMIT = 100


# --- the ImageNet-1k class table ---------------------------------------------------------------

NUM_CLASSES = 1000


@dataclass(frozen=True)
class ClassTable:
    """The 1000 ImageNet classes: ``synsets[i]`` and ``names[i]`` for class index ``i``."""

    synsets: tuple[str, ...]
    names: tuple[str, ...]

    def index_of(self, synset: str) -> int:
        """The class index of a WordNet synset id such as ``n01440764``."""
        try:
            return self._index[synset]
        except KeyError:
            raise PipelineError(
                f"{synset!r} is not an ImageNet-1k synset (expected a WordNet id such as "
                "'n01440764', one of the 1000 classes in litequant/data/imagenet_classes.tsv)"
            ) from None

    def __contains__(self, synset: object) -> bool:
        return synset in self._index

    @property
    def _index(self) -> dict[str, int]:
        return _synset_index(self.synsets)

    def __len__(self) -> int:
        return len(self.synsets)


@lru_cache(maxsize=2)
def _synset_index(synsets: tuple[str, ...]) -> dict[str, int]:
    return {synset: index for index, synset in enumerate(synsets)}


@lru_cache(maxsize=1)
def class_table() -> ClassTable:
    """Load the shipped ImageNet-1k class table (validated: 1000 sorted, unique synsets)."""
    text = resources.files("litequant.data").joinpath("imagenet_classes.tsv").read_text("utf-8")
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t"))
    synsets = tuple(row["synset"] for row in rows)
    names = tuple(row["name"] for row in rows)
    indices = [int(row["index"]) for row in rows]
    if indices != list(range(NUM_CLASSES)) or list(synsets) != sorted(set(synsets)):
        raise PipelineError("litequant/data/imagenet_classes.tsv is damaged: expected 1000 sorted "
                            "synsets")
    return ClassTable(synsets=synsets, names=names)


# --- label spaces ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSpace:
    """The classes of a model's outputs: ``names[i]`` is output ``i``; ``keys[i]`` is how the
    image source names class ``i`` (a synset for ImageNet, else the class name itself)."""

    kind: str
    names: tuple[str, ...]
    keys: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    def describe(self) -> dict[str, Any]:
        """JSON-ready ``kind``, ``names``, ``keys`` (``data/prepare/classes.json``)."""
        return {"kind": self.kind, "names": list(self.names), "keys": list(self.keys)}


def read_label_file(path: str | Path) -> tuple[str, ...]:
    """The class names of a label file, one per line (surrounding blanks stripped, a trailing
    newline allowed); an empty line, a duplicate or a missing file is a :class:`PipelineError`
    naming the path."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"model.labels: {path} is not a file (expected imagenet, folders, "
                            "dataset or the path of a text file with one class name per line)")
    lines = path.read_text("utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    names = tuple(line.strip() for line in lines)
    if not names:
        raise PipelineError(f"model.labels: {path} is empty (expected one class name per line)")
    if "" in names:
        raise PipelineError(f"model.labels: {path} line {names.index('') + 1} is empty "
                            "(expected one class name per line)")
    duplicate = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if duplicate is not None:
        raise PipelineError(f"model.labels: {path} names class {duplicate!r} twice")
    return names


def model_labels(labels: str, classes: int, where: str) -> dict[str, Any]:
    """The label space as far as the model decides it (``model.json``'s ``labels``).

    Args:
        labels: the ``model.labels`` param.
        classes: the model's class count (2 for a single sigmoid output).
        where: the param naming the model, for messages (``model.source: x.keras``).

    Returns:
        ``{"kind": ...}``, with ``path`` and ``names`` for a label file.

    Raises:
        PipelineError: one line naming both counts when they differ.
    """
    if labels == IMAGENET:
        if classes != NUM_CLASSES:
            raise PipelineError(
                f"model.labels is 'imagenet' ({NUM_CLASSES} ImageNet classes) but {where} has "
                f"{classes} classes; set model.labels to folders, dataset or a label file")
        return {"kind": IMAGENET}
    if labels in (FOLDERS, DATASET):
        return {"kind": labels}
    names = read_label_file(labels)
    if len(names) != classes:
        raise PipelineError(f"model.labels: {labels} has {len(names)} class names (lines) but "
                            f"{where} has {classes} classes")
    return {"kind": "file", "path": str(labels), "names": list(names)}


def resolve(labels: dict[str, Any], classes: int, source: str,
            source_classes: list[str]) -> LabelSpace:
    """The label space of a run, checked against the image source's classes.

    Args:
        labels: ``model.json``'s ``labels`` (:func:`model_labels`).
        classes: ``model.json``'s ``num_classes``.
        source: ``fetch.json``'s ``source`` (``folder``, ``tfds``, ``synthetic``).
        source_classes: ``fetch.json``'s ``classes``: every class of the source (sorted folder
            names, or the tfds ``ClassLabel`` names in label order).

    Raises:
        PipelineError: one line when a source class has no output, or the source's own classes
            (``folders``/``dataset``) are not as many as the model's classes.
    """
    kind = labels["kind"]
    if kind == IMAGENET:
        table = class_table()
        unknown = [name for name in source_classes if name not in table]
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise PipelineError(
                f"model.labels is 'imagenet' but {len(unknown)} class(es) of the {source} "
                f"source are not ImageNet-1k synsets: {shown} (expected WordNet ids such as "
                "n01440764; for your own classes set model.labels to folders, dataset or a "
                "label file)")
        return LabelSpace(IMAGENET, table.names, table.synsets)
    if kind in (FOLDERS, DATASET):
        if source != SOURCE_OF[kind]:
            other = next(k for k, s in SOURCE_OF.items() if s == source) \
                if source in SOURCE_OF.values() else None
            raise PipelineError(
                f"model.labels is {kind!r}, which takes the classes of a fetch.source "
                f"{SOURCE_OF[kind]!r}, but the source is {source!r}"
                + (f" (use model.labels: {other})" if other else ""))
        if len(source_classes) != classes:
            what = "class folders" if kind == FOLDERS else "ClassLabel names"
            raise PipelineError(
                f"model.labels is {kind!r}: the source has {len(source_classes)} {what} "
                f"({', '.join(source_classes[:5])}{' ...' if len(source_classes) > 5 else ''}) "
                f"but the model has {classes} classes")
        return LabelSpace(kind, tuple(source_classes), tuple(source_classes))
    names = tuple(labels["names"])
    missing = [name for name in source_classes if name not in names]
    if missing:
        raise PipelineError(
            f"model.labels: {labels['path']} has no line for {len(missing)} class(es) of the "
            f"{source} source: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return LabelSpace("file", names, names)


def label_indices(space: LabelSpace, class_keys: list[str]) -> list[int]:
    """The output index of each image's class (its source class name)."""
    index = {key: i for i, key in enumerate(space.keys)}
    return [index[key] for key in class_keys]
