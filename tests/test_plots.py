"""The report's figures (litequant.report.plots): one label per spot, each nearer its own point."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from litequant.report.plots import _box_distance, _place_labels, coincident_labels


@pytest.fixture
def axes() -> Iterator[Any]:
    """A 400x300-pixel Agg axes with x in 0..10 and y in 90..100 (about 22 pixels per y unit)."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4, 3), dpi=100)
    axes.set_xlim(0, 10)
    axes.set_ylim(90, 100)
    figure.canvas.draw()
    yield axes
    plt.close(figure)


def test_points_on_the_same_spot_share_one_label(axes) -> None:
    # int8 and int8_plain: same size, same agreement; int8_grid one agreement point higher,
    # about 20 pixels above on this axis; float32 far away
    points = [(4.0, 97.5, "int8_plain"), (4.0, 97.5, "int8"), (4.0, 98.5, "int8_grid"),
              (14.0, 100.0, "float32"), (4.001, 97.5005, "int8_selective")]
    assert coincident_labels(axes, points) == [
        (4.0, 97.5, "int8_plain, int8, int8_selective"), (4.0, 98.5, "int8_grid"),
        (14.0, 100.0, "float32")]


def test_each_label_sits_nearer_its_own_point_than_any_other(axes) -> None:
    from matplotlib.text import Text

    # a column of points about 11 pixels apart: a label right above one is right below the next
    points = [(5.0, 95.0 + 0.5 * k, f"variant_{k}") for k in range(4)]
    _place_labels(axes, points)
    axes.figure.canvas.draw()
    renderer = axes.figure.canvas.get_renderer()
    centres = {name: tuple(axes.transData.transform((x, y))) for x, y, name in points}
    labels = {text.get_text(): Text.get_window_extent(text, renderer) for text in axes.texts}
    assert sorted(labels) == sorted(centres)
    for name, box in labels.items():
        bounds = (box.x0, box.y0, box.x1, box.y1)
        own = _box_distance(bounds, *centres[name])
        assert all(own <= _box_distance(bounds, *centre)
                   for other, centre in centres.items() if other != name), name
