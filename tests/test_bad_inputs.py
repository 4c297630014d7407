"""Issue 6 items 1-4: a corpus of bad inputs generated here (no committed binaries).

Each case asserts its behaviour: a valid image in an odd format decodes to the right pixels; an
undecodable one is skipped and counted (or stops the run, ``fetch.on_bad_image: fail``); a bad
folder, params value or model stops with one message naming the path or the params key.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from litequant.core.errors import PipelineError
from litequant.core.layout import read_manifest
from litequant.core.params import (
    BenchmarkParams,
    CalibrationParams,
    EvaluateParams,
    FetchParams,
    ModelParams,
    load,
    section,
)
from litequant.data.fetching import fetch, scan_folder
from litequant.data.images import BadImageError, decode_rgb, load_resized
from litequant.quantize.registry import ConvertParams
from tests.conftest import REPO, TEST_SYNSETS, params_section, tiny_params, write_image

# --- generated image corpus ----------------------------------------------------------------------


def gradient(width: int = 80, height: int = 64) -> np.ndarray:
    """A smooth ``uint8`` ``(height, width, 3)`` RGB test picture (JPEG-friendly)."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.clip(np.stack([yy * 3, xx * 3, 255 - yy * 2], -1), 0, 255).astype(np.uint8)


def blocks() -> np.ndarray:
    """Four flat colour blocks ``(64, 80, 3)``: survives GIF's palette exactly."""
    pixels = np.zeros((64, 80, 3), np.uint8)
    pixels[:32, :40] = (200, 30, 30)
    pixels[:32, 40:] = (30, 200, 30)
    pixels[32:, :40] = (30, 30, 200)
    pixels[32:, 40:] = (240, 240, 20)
    return pixels


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_rgb16(pixels: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), written by hand."""
    height, width, _ = pixels.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def jpeg_bytes() -> bytes:
    return encoded(Image.fromarray(gradient()), "JPEG", quality=95)


def exif_rotated(pixels: np.ndarray) -> bytes:
    """A JPEG whose stored pixels are ``pixels`` turned on their side, with EXIF orientation 6
    (rotate 90° clockwise to display): a correct decoder shows ``pixels`` upright."""
    stored = Image.fromarray(pixels).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encoded(stored, "JPEG", quality=95, exif=exif.tobytes())


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


# name -> (file bytes, expected uint8 RGB pixels, tolerated mean abs difference)
RGB16 = (gradient().astype(np.uint16) * 257 + 100).astype(np.uint16)
GRAY16 = (np.mgrid[0:64, 0:80][0] * 1000).astype(np.uint16)
RGBA = np.concatenate([gradient(), np.full((64, 80, 1), 255, np.uint8)], axis=-1)
RGBA[:, :40, 3] = 0  # left half fully transparent -> composited on white
RGBA_EXPECTED = gradient().copy()
RGBA_EXPECTED[:, :40] = 255
VALID_CASES = {
    "png_named_jpeg": (encoded(Image.fromarray(gradient()), "PNG"), gradient(), 0.0),
    "gif_named_jpeg": (encoded(Image.fromarray(blocks()), "GIF"), blocks(), 0.0),
    "webp_named_jpeg": (encoded(Image.fromarray(gradient()), "WEBP", lossless=True),
                        gradient(), 0.0),
    "cmyk_jpeg": (encoded(Image.fromarray(gradient()).convert("CMYK"), "JPEG", quality=95),
                  gradient(), 2.0),
    "grayscale_jpeg": (encoded(Image.fromarray(gradient()).convert("L"), "JPEG", quality=95),
                       np.asarray(Image.fromarray(gradient()).convert("L").convert("RGB")), 2.0),
    "png_16bit_gray": (encoded(Image.fromarray(GRAY16), "PNG"),
                       np.repeat(np.round(GRAY16 / 257.0).astype(np.uint8)[..., None], 3, -1),
                       0.51),
    "png_16bit_rgb": (png_rgb16(RGB16), (RGB16 >> 8).astype(np.uint8), 0.0),
    "png_rgba": (encoded(Image.fromarray(RGBA, "RGBA"), "PNG"), RGBA_EXPECTED, 0.0),
    "exif_rotated_jpeg": (exif_rotated(gradient()), gradient(), 2.0),
}

TRUNCATED = jpeg_bytes()[: len(jpeg_bytes()) // 2]
BAD_CASES = {
    "zero_bytes": (b"", "empty file"),
    "truncated_half": (TRUNCATED, "truncated"),
    "truncated_end_marker": (jpeg_bytes()[:-2], "truncated"),
    "corrupt_header": (jpeg_bytes()[:20] + bytes(40) + jpeg_bytes()[60:], "cannot decode"),
    "text_named_jpeg": (b"this is a README, not a photo\n", "not a recognised image format"),
    "random_bytes": (np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes(),
                     "not a recognised image format"),
    # decodes fine, but 1x1 pixels upscaled to the model's input is no photo to classify
    "one_pixel": (encoded(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"),
                  "too small to classify (1x1 pixels; at least 32x32"),
    "thin_strip": (encoded(Image.new("RGB", (640, 31), (10, 200, 30)), "PNG"),
                   "too small to classify (640x31 pixels"),
}


@pytest.mark.parametrize("case", sorted(VALID_CASES))
def test_valid_images_in_odd_formats_decode_correctly(case: str, tmp_path: Path) -> None:
    data, expected, tolerance = VALID_CASES[case]
    path = tmp_path / f"{case}.JPEG"  # the suffix lies for PNG/GIF/WebP: bytes decide
    path.write_bytes(data)
    pixels = np.asarray(decode_rgb(path))
    assert pixels.dtype == np.uint8 and pixels.shape == expected.shape
    assert mean_difference(pixels, expected) <= tolerance


def test_exif_rotation_is_applied_not_ignored(tmp_path: Path) -> None:
    path = tmp_path / "rotated.JPEG"
    path.write_bytes(exif_rotated(gradient()))
    with Image.open(path) as raw:
        assert raw.size == (64, 80)  # stored on its side
    assert decode_rgb(path).size == (80, 64)  # shown upright


def test_very_large_image_decodes_and_a_decompression_bomb_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.JPEG"
    Image.new("RGB", (8000, 8000), (10, 200, 30)).save(big, "JPEG", quality=80)
    pixels = load_resized(big, (96, 96))
    assert pixels.shape == (96, 96, 3)
    assert mean_difference(pixels, np.tile(np.uint8([10, 200, 30]), (96, 96, 1))) <= 2
    bomb = tmp_path / "bomb.png"  # 400 Mpixel, 1 bit per pixel: tiny file, huge decode
    Image.new("1", (20000, 20000)).save(bomb)
    with pytest.raises(BadImageError, match="too large") as error:
        decode_rgb(bomb)
    assert str(bomb) in str(error.value)


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_undecodable_files_raise_bad_image_error_naming_the_path(case: str,
                                                                   tmp_path: Path) -> None:
    data, reason = BAD_CASES[case]
    path = tmp_path / f"{case}.JPEG"
    path.write_bytes(data)
    with pytest.raises(BadImageError) as error:
        decode_rgb(path)
    assert str(path) in str(error.value) and reason in error.value.reason


# --- bad images inside a fetched folder: skip (counted) or fail --------------------------------

def corpus_folder(root: Path) -> tuple[Path, list[str], list[str]]:
    """A folder of good images plus every bad case and non-image files.

    Returns the folder, the bad files' paths and the ignored files' paths.
    """
    good_per_class = 3
    for s, synset in enumerate(TEST_SYNSETS):
        for i in range(good_per_class):
            write_image(root / synset / f"{synset}_{i}.JPEG", seed=10 * s + i)
    for case, (data, _, _) in VALID_CASES.items():
        (root / TEST_SYNSETS[0] / f"{case}.JPEG").write_bytes(data)
    bad = []
    for index, (case, (data, _)) in enumerate(sorted(BAD_CASES.items())):
        path = root / TEST_SYNSETS[index % len(TEST_SYNSETS)] / f"{case}.JPEG"
        path.write_bytes(data)
        bad.append(str(path))
    ignored = []
    for path in (root / ".DS_Store", root / "README.txt", root / TEST_SYNSETS[1] / ".DS_Store",
                 root / TEST_SYNSETS[1] / "notes.txt"):
        path.write_bytes(b"\x00\x01 not an image")
        ignored.append(str(path))
    return root, sorted(bad), ignored


def folder_fetch_params(folder: Path, **overrides) -> FetchParams:
    values = {"source": "folder", "folder": str(folder), "calibration_size": 5,
              "evaluation_size": None, "seed": 0, **overrides}
    return params_section(FetchParams, **values)


def test_bad_images_are_skipped_counted_and_named(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    folder, bad, ignored = corpus_folder(tmp_path / "images")
    summary = fetch(folder_fetch_params(folder), tmp_path / "out")
    good = 3 * len(TEST_SYNSETS) + len(VALID_CASES)
    assert summary["bad_image_count"] == len(BAD_CASES)
    assert sorted(b["path"] for b in summary["bad_images"]) == bad
    assert summary["calibration_images"] + summary["evaluation_images"] == good
    written = json.loads((tmp_path / "out/fetch.json").read_text())
    assert written["bad_image_count"] == len(BAD_CASES)
    manifest = (tmp_path / "out/manifest.csv").read_text()
    assert not any(Path(path).name in manifest for path in bad)
    lines = [line for line in capsys.readouterr().out.splitlines() if "undecodable" in line]
    assert len(lines) == 1 and f"skipped {len(BAD_CASES)} " in lines[0]
    assert all(path in lines[0] for path in bad)
    # non-image files are ignored, counted and listed; hidden files inside class folders too
    assert written["ignored_files"] == len(ignored)
    assert sorted(written["ignored_paths"]) == sorted(ignored)


def test_on_bad_image_fail_stops_naming_every_bad_file(tmp_path: Path) -> None:
    folder, bad, _ = corpus_folder(tmp_path / "images")
    with pytest.raises(PipelineError) as error:
        fetch(folder_fetch_params(folder, on_bad_image="fail"), tmp_path / "out")
    message = str(error.value)
    assert "fetch.on_bad_image" in message and "\n" not in message
    assert all(path in message for path in bad)
    assert not (tmp_path / "out").exists()


def test_too_few_decodable_images_names_the_sizes(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    for i in range(3):
        write_image(folder / TEST_SYNSETS[0] / f"good_{i}.JPEG", seed=i)
        (folder / TEST_SYNSETS[1] / f"bad_{i}.JPEG").parent.mkdir(parents=True, exist_ok=True)
        (folder / TEST_SYNSETS[1] / f"bad_{i}.JPEG").write_bytes(TRUNCATED)
    with pytest.raises(PipelineError, match="fetch.evaluation_size") as error:
        fetch(folder_fetch_params(folder, calibration_size=2, evaluation_size=3),
                    tmp_path / "out")
    assert "undecodable files were skipped" in str(error.value)


# --- folders and labels --------------------------------------------------------------------------

def make_flat(root: Path) -> Path:
    for i in range(3):
        write_image(root / f"photo_{i}.JPEG", seed=i)
    return root


def make_no_images(root: Path) -> Path:
    for synset in TEST_SYNSETS[:2]:
        (root / synset).mkdir(parents=True)
        (root / synset / "README.txt").write_text("nothing here")
        (root / synset / ".DS_Store").write_bytes(b"\x00")
    return root


def make_empty(root: Path) -> Path:
    root.mkdir(parents=True)
    return root


def make_missing(root: Path) -> Path:
    return root / "does-not-exist"


def make_too_small(root: Path) -> Path:
    for i in range(4):
        write_image(root / TEST_SYNSETS[i % 2] / f"{i}.JPEG", seed=i)
    return root


FOLDER_ERRORS = {
    "flat_folder": (make_flat, "no class folders"),
    "no_images": (make_no_images, "no images in the class folders"),
    "empty_folder": (make_empty, "is empty"),
    "missing_folder": (make_missing, "is not a folder"),
    "fewer_images_than_sizes": (make_too_small, "fetch.calibration_size=5"),
}


@pytest.mark.parametrize("case", sorted(FOLDER_ERRORS))
def test_bad_folders_stop_naming_the_path_and_what_was_expected(case: str,
                                                                tmp_path: Path) -> None:
    make, expected = FOLDER_ERRORS[case]
    folder = make(tmp_path / "images")
    with pytest.raises(PipelineError) as error:
        fetch(folder_fetch_params(folder, evaluation_size=10), tmp_path / "out")
    message = str(error.value)
    assert expected in message and "\n" not in message
    if case != "fewer_images_than_sizes":
        assert str(folder) in message and "fetch.folder" in message
    assert not (tmp_path / "out").exists()


def test_symlinks_non_ascii_names_and_empty_class_folders_work(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    for i in range(4):
        write_image(real / "class" / f"{i}.JPEG", seed=i)
    write_image(real / "single.JPEG", seed=9)
    folder = tmp_path / "images"
    (folder / TEST_SYNSETS[1]).mkdir(parents=True)
    (folder / TEST_SYNSETS[0]).symlink_to(real / "class", target_is_directory=True)
    (folder / TEST_SYNSETS[1] / "linked.JPEG").symlink_to(real / "single.JPEG")
    (folder / TEST_SYNSETS[1] / "dangling.JPEG").symlink_to(real / "gone.JPEG")
    write_image(folder / TEST_SYNSETS[1] / "chat_noir_été_猫.JPEG", seed=7)
    (folder / TEST_SYNSETS[2]).mkdir()  # an empty class folder is simply unused
    summary = fetch(folder_fetch_params(folder, calibration_size=2), tmp_path / "out")
    assert summary["calibration_images"] + summary["evaluation_images"] == 6
    assert [b["path"] for b in summary["bad_images"]] == [
        str(folder / TEST_SYNSETS[1] / "dangling.JPEG")]
    rows = read_manifest(tmp_path / "out" / "manifest.csv")
    by_name = {Path(row["path"]).name: row for row in rows}
    assert by_name["chat_noir_été_猫.JPEG"]["class"] == TEST_SYNSETS[1]
    assert by_name["linked.JPEG"]["class"] == TEST_SYNSETS[1]
    for row in rows:  # symlinks are copied as real files, never as links
        copied = tmp_path / "out" / row["path"]
        assert copied.is_file() and not copied.is_symlink()
    assert sum(row["class"] == TEST_SYNSETS[0] for row in rows) == 4


def test_fetch_on_a_bad_folder_prints_one_error_line_and_exits_1(tmp_path: Path) -> None:
    folder = make_flat(tmp_path / "flat")
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params(folder)))
    result = subprocess.run([sys.executable, "-m", "stages.fetch"], cwd=project,
                            capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: fetch.folder: ")
    assert str(folder) in lines[0] and "Traceback" not in result.stderr
    assert not (project / "data" / "fetch").exists()


# --- params ---------------------------------------------------------------------------------

PARAM_ERRORS = {
    # (section, key, bad value, params model, expected key in the message)
    "unknown_variant": ("convert", "variants",
                        {**load(REPO / "params.yaml")["convert"]["variants"], "int4": True},
                        ConvertParams, "convert.variants.int4"),
    "variant_not_a_boolean": ("convert", "variants", {"int8": "yes"}, ConvertParams,
                              "convert.variants.int8"),
    "zero_calibration_size": ("fetch", "calibration_size", 0, FetchParams,
                              "fetch.calibration_size"),
    "negative_evaluation_size": ("fetch", "evaluation_size", -5, FetchParams,
                                 "fetch.evaluation_size"),
    "string_size": ("fetch", "calibration_size", "100", FetchParams, "fetch.calibration_size"),
    "float_seed": ("fetch", "seed", 1.5, FetchParams, "fetch.seed"),
    "bool_size": ("fetch", "evaluation_size", True, FetchParams, "fetch.evaluation_size"),
    "bad_policy": ("fetch", "on_bad_image", "ignore", FetchParams, "fetch.on_bad_image"),
    "folder_not_a_string": ("fetch", "folder", 5, FetchParams, "fetch.folder"),
    "misspelt_key": ("fetch", "on_bad_imag", "fail", FetchParams, "fetch.on_bad_imag"),
    "zero_input_size": ("model", "input_size", 0, ModelParams, "model.input_size"),
    "string_alpha": ("model", "alpha", "wide", ModelParams, "model.alpha"),
    "negative_alpha": ("model", "alpha", -1.0, ModelParams, "model.alpha"),
    "unknown_application": ("model", "name", "MobileNetV9", ModelParams, "model.name"),
    "zero_num_images": ("calibration", "num_images", 0, CalibrationParams,
                        "calibration.num_images"),
    "bad_calibration_source": ("calibration", "source", "noise", CalibrationParams,
                               "calibration.source"),
    "zero_batch": ("evaluate", "batch_size", 0, EvaluateParams, "evaluate.batch_size"),
    "negative_threads": ("evaluate", "threads", -2, EvaluateParams, "evaluate.threads"),
    "thread_list_of_strings": ("benchmark", "threads", ["a"], BenchmarkParams,
                               "benchmark.threads"),
    "zero_thread_count": ("benchmark", "threads", [1, 0], BenchmarkParams,
                          "benchmark.threads"),
    "negative_seconds": ("benchmark", "min_seconds", -1, BenchmarkParams,
                         "benchmark.min_seconds"),
}


@pytest.mark.parametrize("case", sorted(PARAM_ERRORS))
def test_bad_params_are_refused_naming_the_key(case: str) -> None:
    name, key, value, model, named = PARAM_ERRORS[case]
    params = tiny_params(Path("/nonexistent/images"))
    params[name][key] = value
    with pytest.raises(PipelineError) as error:
        section(params, model)
    assert named in str(error.value) and "\n" not in str(error.value)


def test_default_params_pass_every_check() -> None:
    params = load(REPO / "params.yaml")
    for model in (FetchParams, ModelParams, CalibrationParams, EvaluateParams, BenchmarkParams,
                  ConvertParams):
        section(params, model)


def test_section_not_a_mapping_and_invalid_yaml_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="section 'fetch'"):
        section({"fetch": 3}, FetchParams)
    broken = tmp_path / "params.yaml"
    broken.write_text("fetch:\n  seed: [1, 2\n")
    with pytest.raises(PipelineError, match="not valid YAML") as error:
        load(broken)
    assert str(broken) in str(error.value)


def test_params_yaml_is_loaded_with_safe_load(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    evil = tmp_path / "params.yaml"
    evil.write_text(f"fetch: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load(evil)
    assert not marker.exists()


def test_calibration_larger_than_the_pool_names_both_keys(tmp_path: Path) -> None:
    from litequant.quantize.context import calibration_inputs

    params = params_section(CalibrationParams, num_images=8)
    with pytest.raises(PipelineError) as error:
        calibration_inputs(np.zeros((4, 8, 8, 3), np.uint8), params, "tf")
    assert "calibration.num_images=8" in str(error.value)
    assert "fetch.calibration_size" in str(error.value)


def test_unreadable_class_folder_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(Tests run as root, where chmod 000 still allows reading: the denial is simulated.)"""
    folder = make_too_small(tmp_path / "images")
    locked = folder / TEST_SYNSETS[1]
    real_iterdir = Path.iterdir

    def iterdir(self: Path):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    with pytest.raises(PipelineError, match="Permission denied") as error:
        scan_folder(folder)
    assert f"fetch.folder: cannot list {locked}" in str(error.value)
