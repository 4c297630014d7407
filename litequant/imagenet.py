"""The ImageNet-1k class table shipped with the package (index, WordNet synset, name).

The index is the position of the synset in sorted order, i.e. the output index of every Keras
ImageNet classifier.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from litequant.errors import PipelineError

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
                "'n01440764', one of the 1000 classes in litequant/imagenet_classes.tsv)") from None

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
    text = resources.files("litequant").joinpath("imagenet_classes.tsv").read_text("utf-8")
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t"))
    synsets = tuple(row["synset"] for row in rows)
    names = tuple(row["name"] for row in rows)
    indices = [int(row["index"]) for row in rows]
    if indices != list(range(NUM_CLASSES)) or list(synsets) != sorted(set(synsets)):
        raise PipelineError("litequant/imagenet_classes.tsv is damaged: expected 1000 sorted "
                            "synsets")
    return ClassTable(synsets=synsets, names=names)
