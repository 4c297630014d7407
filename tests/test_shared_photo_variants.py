"""Issue 6 acceptance: CMYK, grayscale and EXIF-rotated copies of real ../shared photos get the
same top-1 from the real float MobileNetV2 as the original photo (decoded by
litequant.data.images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from litequant.core.preprocessing import preprocess
from litequant.data.images import load_resized
from litequant.data.labels import class_table
from tests.conftest import SHARED_KERAS, SHARED_VAL, needs_shared

#: Photos whose class does not hinge on colour (a grayscale copy genuinely loses the colour,
#: so e.g. a goldfish may stop being one; with CMYK and EXIF rotation nothing is lost).
PHOTO_SYNSETS = ("n01491361", "n01560419", "n01980166")  # tiger shark, bulbul, fiddler crab


def variants(photo: Path, folder: Path) -> list[Path]:
    """The original and its CMYK, grayscale and EXIF-rotated (orientation 6 and 8) copies."""
    with Image.open(photo) as opened:
        rgb = opened.convert("RGB")
    copies = [photo]
    for name, image, orientation in (
            ("cmyk", rgb.convert("CMYK"), None),
            ("gray", rgb.convert("L"), None),
            ("exif6", rgb.transpose(Image.Transpose.ROTATE_90), 6),  # shown turned 90° cw
            ("exif8", rgb.transpose(Image.Transpose.ROTATE_270), 8)):  # shown turned 90° ccw
        options = {}
        if orientation is not None:
            exif = Image.Exif()
            exif[0x0112] = orientation
            options["exif"] = exif.tobytes()
        path = folder / f"{photo.stem}_{name}.JPEG"
        image.save(path, "JPEG", quality=95, **options)
        copies.append(path)
    return copies


@pytest.mark.slow  # loads the real 224x224 MobileNetV2 of ../shared and classifies 15 photos
@needs_shared
def test_cmyk_grayscale_and_exif_rotated_copies_keep_the_top1(tmp_path: Path) -> None:
    import keras

    model = keras.models.load_model(SHARED_KERAS, compile=False)
    table = class_table()
    for synset in PHOTO_SYNSETS:
        photo = sorted((SHARED_VAL / synset).iterdir())[0]
        paths = variants(photo, tmp_path)
        with Image.open(paths[1]) as cmyk, Image.open(paths[2]) as gray:
            assert (cmyk.mode, gray.mode) == ("CMYK", "L")
        images = np.stack([load_resized(path, (224, 224)) for path in paths])
        for index in (1, 3, 4):  # CMYK and the rotated copies decode to the original's pixels
            difference = np.abs(images[index].astype(int) - images[0].astype(int)).mean()
            assert difference < 3, f"{paths[index]}: mean |difference| {difference:.1f}"
        top1 = model.predict(preprocess(images, "tf"), verbose=0).argmax(axis=-1)
        assert top1[0] == table.index_of(synset), f"{photo}: the original is misclassified"
        assert top1.tolist() == [top1[0]] * len(paths), f"{photo}: {top1.tolist()}"
