"""tensorflow-datasets sources, offline: real tfds builders and readers over mocked examples.

``tfds.testing.mock_data`` replaces the stored examples with random ones generated from each
dataset's real feature spec (its real label names included). The metadata a prepared dataset has
on disk (``dataset_info.json`` with split sizes) is written by tfds itself from the builder's
info, so ``litequant.data.fetching`` takes exactly the code path of a prepared dataset.
"""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import pytest

from litequant.core.errors import PipelineError
from litequant.core.offline import OFFLINE_HELP, network_reachable
from litequant.core.params import FetchParams
from litequant.data.fetching import fetch
from litequant.data.labels import class_table, label_indices, resolve
from tests.conftest import params_section

#: Imagenette's 10 classes: WordNet synset → (ImageNet-1k index, a word of the class name).
IMAGENETTE = {
    "n01440764": (0, "tench"), "n02102040": (217, "English springer"),
    "n02979186": (482, "cassette player"), "n03000684": (491, "chain saw"),
    "n03028079": (497, "church"), "n03394916": (566, "French horn"),
    "n03417042": (569, "garbage truck"), "n03425413": (571, "gas pump"),
    "n03445777": (574, "golf ball"), "n03888257": (701, "parachute"),
}
#: Mock examples per split. tfds' mock images are 5..49 pixels a side at random, and fetch skips
#: images under 32x32 as too small to classify, so only about one in six is usable.
MOCK_EXAMPLES = 160


def write_prepared_metadata(data_dir: Path, name: str, splits: dict[str, int]) -> None:
    """The metadata tfds writes when it prepares ``name`` (split sizes), without examples."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import splits as splits_lib

    builder = tfds.builder(name, data_dir=str(data_dir))
    builder.info.set_splits(splits_lib.SplitDict([
        splits_lib.SplitInfo(name=split, shard_lengths=[count], num_bytes=0,
                             filename_template=None) for split, count in splits.items()]))
    Path(builder.data_dir).mkdir(parents=True)
    builder.info.write_to_directory(builder.data_dir)


def mocked_examples(name: str, data_dir: Path, split: str) -> list[dict]:
    """The mocked examples of ``split`` as tfds yields them (encoded image bytes, raw label)."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=str(data_dir))
    dataset = builder.as_dataset(split=split, shuffle_files=False,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    return [{"image": bytes(e["image"]), "label": int(e["label"])}
            for e in tfds.as_numpy(dataset)]


def fetch_mocked(tmp_path: Path, name: str, splits: dict[str, int], **fetch_values: object
                 ) -> tuple[list[dict[str, str]], dict[str, list[dict]]]:
    """Fetch from a mocked ``name``; returns the manifest rows (each with ``label``: its
    ImageNet-1k index, as stage ``prepare`` resolves it for ``model.labels: imagenet``) and the
    mocked examples."""
    import tensorflow_datasets as tfds

    data_dir = tmp_path / "tfds"
    write_prepared_metadata(data_dir, name, splits)
    values = {"source": "tfds", "tfds_name": name, "tfds_data_dir": str(data_dir),
              "calibration_size": 4, "evaluation_size": 6, **fetch_values}
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, data_dir=str(data_dir),
                                policy=tfds.testing.MockPolicy.USE_FILES):
        fetch(params_section(FetchParams, **values), tmp_path / "fetch")
        examples = {split: mocked_examples(name, data_dir, split) for split in splits}
    with (tmp_path / "fetch" / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    if all(r["class"] in class_table() for r in rows):
        summary = json.loads((tmp_path / "fetch" / "fetch.json").read_text())
        space = resolve({"kind": "imagenet"}, 1000, "tfds", summary["classes"])
        for row, label in zip(rows, label_indices(space, [r["class"] for r in rows]),
                              strict=True):
            row["label"] = str(label)
    return rows, examples


def source_example(row: dict[str, str], name: str, examples: dict[str, list[dict]]) -> dict:
    match = re.fullmatch(rf"tfds:{re.escape(name)}/(\w+)\[(\d+)\]", row["origin"])
    assert match, row["origin"]
    return examples[match.group(1)][int(match.group(2))]


def test_imagenette_class_table_entries() -> None:
    # the expected indices above are checked against the shipped class table by name
    table = class_table()
    for synset, (index, word) in IMAGENETTE.items():
        assert table.synsets[index] == synset and word in table.names[index]


@pytest.mark.parametrize("name", ["imagenette/320px-v2", "imagenette/160px",
                                  "imagenette/full-size-v2"])
def test_imagenette_labels_map_to_imagenet_indices(name: str, tmp_path: Path) -> None:
    rows, examples = fetch_mocked(tmp_path, name, {"train": 40, "validation": 30})
    assert [r["split"] for r in rows] == ["calibration"] * 4 + ["evaluation"] * 6
    import tensorflow_datasets as tfds

    label_names = tfds.builder(name).info.features["label"].names
    assert sorted(label_names) == sorted(IMAGENETTE)
    for row in rows:
        # calibration from the train split, evaluation from validation
        assert f"/{'train' if row['split'] == 'calibration' else 'validation'}[" in row["origin"]
        example = source_example(row, name, examples)
        synset = label_names[example["label"]]
        assert row["class"] == synset and int(row["label"]) == IMAGENETTE[synset][0]
        assert (tmp_path / "fetch" / row["path"]).read_bytes() == example["image"]


@pytest.mark.parametrize("config", ["matched-frequency", "threshold-0.7", "topimages"])
def test_imagenet_v2_label_i_is_imagenet_class_i(config: str, tmp_path: Path) -> None:
    name = f"imagenet_v2/{config}"
    rows, examples = fetch_mocked(tmp_path, name, {"test": 10000})
    table = class_table()
    origins = [r["origin"] for r in rows]
    assert len(rows) == 10 and len(set(origins)) == 10  # both splits from test, disjoint
    for row in rows:
        example = source_example(row, name, examples)
        assert int(row["label"]) == example["label"]
        assert row["class"] == table.synsets[example["label"]]
        assert (tmp_path / "fetch" / row["path"]).read_bytes() == example["image"]


def test_imagenet2012_with_manual_dir(tmp_path: Path) -> None:
    manual = tmp_path / "manual"
    manual.mkdir()
    name = "imagenet2012"
    rows, examples = fetch_mocked(tmp_path, name, {"train": 1281167, "validation": 50000,
                                                   "test": 100000}, tfds_manual_dir=str(manual))
    table = class_table()
    for row in rows:
        assert f"/{'train' if row['split'] == 'calibration' else 'validation'}[" in row["origin"]
        example = source_example(row, name, examples)
        assert int(row["label"]) == example["label"]
        assert row["class"] == table.synsets[example["label"]]


def test_imagenet2012_unprepared_asks_for_the_manual_dir(tmp_path: Path) -> None:
    params = params_section(FetchParams, **{"source": "tfds", "tfds_name": "imagenet2012",
                                     "tfds_data_dir": str(tmp_path), "calibration_size": 4})
    with pytest.raises(PipelineError, match="fetch.tfds_manual_dir.*ILSVRC2012_img_val.tar"):
        fetch(params, tmp_path / "fetch")
    missing = params_section(FetchParams, **{"source": "tfds", "tfds_name": "imagenet2012",
                                      "tfds_data_dir": str(tmp_path), "calibration_size": 4,
                                      "tfds_manual_dir": str(tmp_path / "nowhere")})
    with pytest.raises(PipelineError, match="fetch.tfds_manual_dir: .*nowhere is not a folder"):
        fetch(missing, tmp_path / "fetch")


def test_unknown_tfds_name_is_one_line(tmp_path: Path) -> None:
    params = params_section(FetchParams, **{"source": "tfds", "tfds_name": "imagenette/999px",
                                     "tfds_data_dir": str(tmp_path), "calibration_size": 4})
    with pytest.raises(PipelineError, match="fetch.tfds_name: 'imagenette/999px'"):
        fetch(params, tmp_path / "fetch")


@pytest.mark.skipif(network_reachable("storage.googleapis.com"),
                    reason="the download host is reachable: this checks the offline failure")
def test_default_source_unprepared_and_offline_fails_within_seconds(tmp_path: Path) -> None:
    import tensorflow_datasets  # noqa: F401  (import time is not the stage's doing)

    params = params_section(FetchParams, **{"source": "tfds", "tfds_data_dir": str(tmp_path),
                                     "calibration_size": 4})
    start = time.monotonic()
    with pytest.raises(PipelineError) as raised:
        fetch(params, tmp_path / "fetch")
    assert time.monotonic() - start < 15
    assert "imagenet_v2/matched-frequency" in str(raised.value)
    assert OFFLINE_HELP in str(raised.value)


@pytest.mark.parametrize("name, classes", [
    ("tf_flowers", ["dandelion", "daisy", "tulips", "sunflowers", "roses"]),
    ("cats_vs_dogs", ["cat", "dog"]),
])
def test_own_class_datasets_take_their_class_label_names(name: str, classes: list[str],
                                                         tmp_path: Path) -> None:
    import tensorflow_datasets as tfds

    rows, examples = fetch_mocked(tmp_path, name, {"train": 200})
    assert tfds.builder(name).info.features["label"].names == classes
    summary = json.loads((tmp_path / "fetch" / "fetch.json").read_text())
    assert summary["classes"] == classes  # ClassLabel order: label i is class i
    space = resolve({"kind": "dataset"}, len(classes), "tfds", summary["classes"])
    labels = label_indices(space, [row["class"] for row in rows])
    for row, label in zip(rows, labels, strict=True):
        example = source_example(row, name, examples)
        assert label == example["label"] and row["class"] == classes[example["label"]]
        assert (tmp_path / "fetch" / row["path"]).read_bytes() == example["image"]
    with pytest.raises(PipelineError, match="not ImageNet-1k synsets.*model.labels to folders, "
                                            "dataset or a label file"):
        resolve({"kind": "imagenet"}, 1000, "tfds", summary["classes"])
