"""The report's figures (litequant.plots): points drawn on the same spot share one label."""

from __future__ import annotations

import pytest

from litequant.plots import coincident_labels


def test_points_on_the_same_spot_share_one_label() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4, 3), dpi=100)
    axes.set_xlim(0, 10)
    axes.set_ylim(90, 100)
    # int8 and int8_plain: same size, same agreement; int8_grid one agreement point higher,
    # about 20 pixels above on this axis; float32 far away
    points = [(4.0, 97.5, "int8_plain"), (4.0, 97.5, "int8"), (4.0, 98.5, "int8_grid"),
              (14.0, 100.0, "float32"), (4.001, 97.5005, "int8_selective")]
    labels = coincident_labels(axes, points)
    plt.close(figure)
    assert labels == [(4.0, 97.5, "int8_plain, int8, int8_selective"),
                      (4.0, 98.5, "int8_grid"), (14.0, 100.0, "float32")]
