"""Bounded memory: ``.npy`` files streamed in and read by row ranges, metrics accumulated batch
by batch, and the evaluation reading only one batch of the split at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from litequant.core import metrics
from litequant.core.arrays import NpyRows, NpyWriter
from litequant.core.errors import PipelineError


def test_streamed_file_is_byte_identical_to_np_save(tmp_path: Path) -> None:
    array = np.random.default_rng(0).integers(0, 256, (11, 5, 4, 3), dtype=np.uint8)
    np.save(tmp_path / "whole.npy", array)
    with NpyWriter(tmp_path / "streamed.npy", array.shape, np.uint8) as writer:
        for start in range(0, 11, 4):
            writer.write(array[start:start + 4])
    assert (tmp_path / "streamed.npy").read_bytes() == (tmp_path / "whole.npy").read_bytes()


def test_writer_refuses_missing_extra_and_misshapen_rows(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="2 of 3 rows"):
        with NpyWriter(tmp_path / "a.npy", (3, 2), np.float32) as writer:
            writer.write(np.zeros((2, 2), np.float32))
    with NpyWriter(tmp_path / "b.npy", (1, 2), np.float32) as writer:
        with pytest.raises(PipelineError, match="more than 1 rows"):
            writer.write(np.zeros((2, 2), np.float32))
        with pytest.raises(PipelineError, match="do not fit"):
            writer.write(np.zeros((1, 3), np.float32))
        writer.write(np.ones((1, 2), np.float32))
    assert np.load(tmp_path / "b.npy").tolist() == [[1.0, 1.0]]


def test_rows_index_like_the_array(tmp_path: Path) -> None:
    array = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    np.save(tmp_path / "a.npy", array)
    rows = NpyRows(tmp_path / "a.npy")
    assert (len(rows), rows.shape, rows.dtype, rows.ndim) == (7, (7, 3), np.float32, 2)
    for key in (slice(2, 5), slice(None), slice(5, 2), slice(1, None, 3), [6, 0, 0], 3, -1,
                np.array([True, False] * 3 + [True])):
        assert np.array_equal(rows[key], array[key]), key
    with pytest.raises(IndexError):
        rows[7]


def test_truncated_file_is_named(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((4, 10), np.uint8))
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "a.npy").write_bytes(data[:-5])
    with pytest.raises(PipelineError, match=r"a\.npy: truncated"):
        NpyRows(tmp_path / "a.npy")


def test_running_metrics_over_batches_equal_the_whole_array_formulas() -> None:
    rng = np.random.default_rng(1)
    reference = metrics.softmax(rng.normal(size=(50, 20)).astype(np.float32))
    scores = metrics.softmax(rng.normal(size=(50, 20)).astype(np.float32) + 2 * reference)
    labels = rng.integers(0, 20, 50)
    running = metrics.RunningMetrics()
    for start in range(0, 50, 7):
        running.add(scores[start:start + 7], labels[start:start + 7])
        running.add_fidelity(reference[start:start + 7], scores[start:start + 7])
    whole = {"top1": metrics.top_k_accuracy(scores, labels, 1),
             "top5": metrics.top_k_accuracy(scores, labels, 5), "images": 50,
             "agreement": metrics.top1_agreement(reference, scores),
             "top5_overlap": metrics.top_k_overlap(reference, scores, 5),
             "kl_divergence": metrics.mean_kl_divergence(reference, scores),
             "sqnr_db": metrics.sqnr_db(reference, scores)}
    assert {**running.classification(), **running.fidelity()} == pytest.approx(whole, rel=1e-12)
    assert 0 < whole["agreement"] < 100  # a case where the metrics are not trivial


@pytest.mark.parametrize(("classes", "k"), [(3, 2), (4, 3), (2, None)])
def test_running_metrics_use_top_k_of_the_label_space(classes: int, k: int | None) -> None:
    rng = np.random.default_rng(classes)
    reference = metrics.softmax(rng.normal(size=(40, classes)).astype(np.float32))
    scores = metrics.softmax(rng.normal(size=(40, classes)).astype(np.float32))
    labels = rng.integers(0, classes, 40)
    running = metrics.RunningMetrics()
    for start in range(0, 40, 9):
        running.add(scores[start:start + 9], labels[start:start + 9])
        running.add_fidelity(reference[start:start + 9], scores[start:start + 9])
    measured = {**running.classification(), **running.fidelity()}
    top_keys = {key for key in measured if key.startswith("top") and key != "top1"}
    if k is None:  # two classes: top-k would be top-1, so there is none
        assert top_keys == set()
        return
    assert top_keys == {f"top{k}", f"top{k}_overlap"}
    # by hand: a label is a hit when fewer than k classes score higher than it
    higher = (scores > scores[np.arange(40), labels][:, None]).sum(axis=1)
    assert measured[f"top{k}"] == pytest.approx(100 * np.mean(higher < k))
    assert measured[f"top{k}_overlap"] == pytest.approx(
        metrics.top_k_overlap(reference, scores, k), rel=1e-12)


class CountingRows(NpyRows):
    """An :class:`NpyRows` that remembers the largest number of rows read at once."""

    largest = 0

    def read(self, start: int, stop: int) -> np.ndarray:
        CountingRows.largest = max(CountingRows.largest, stop - start)
        return super().read(start, stop)


def test_evaluation_reads_one_batch_of_the_split_at_a_time(tmp_path: Path) -> None:
    import tensorflow as tf

    from litequant.measure.evaluation import evaluate_model
    from tests.conftest import small_classifier

    model = small_classifier()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    (tmp_path / "m.tflite").write_bytes(converter.convert())
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (23, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 1000, 23).astype(np.int32)
    np.save(tmp_path / "images.npy", images)
    reference = model.predict(images.astype(np.float32) / 127.5 - 1.0, verbose=0)
    np.save(tmp_path / "reference.npy", reference.astype(np.float32))
    CountingRows.largest = 0
    streamed, predicted = evaluate_model(
        tmp_path / "m.tflite", CountingRows(tmp_path / "images.npy"), labels,
        CountingRows(tmp_path / "reference.npy"), "tf", "probabilities", workers=1, batch_size=4)
    assert CountingRows.largest == 4
    in_memory, predicted_in_memory = evaluate_model(
        tmp_path / "m.tflite", images, labels, reference, "tf", "probabilities", workers=2,
        batch_size=4)
    assert streamed == pytest.approx(in_memory, rel=1e-9)
    assert streamed["images"] == 23 and streamed["agreement"] >= 90.0
    # the per-image top-1 classes, gathered chunk by chunk in row order
    assert predicted.dtype == np.int32 and predicted.shape == (23,)
    np.testing.assert_array_equal(predicted, predicted_in_memory)
    assert streamed["top1"] == pytest.approx(100 * np.mean(predicted == labels))
    assert streamed["agreement"] == pytest.approx(
        100 * np.mean(predicted == np.argmax(reference, axis=1)))
