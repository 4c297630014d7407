"""Materialising two disjoint, deterministic splits of labelled images (stage ``fetch``).

:func:`fetch` takes the ``fetch`` params and writes ``data/fetch/``:

* ``calibration/<class>/<file>`` and ``evaluation/<class>/<file>``: the selected image files,
  byte-for-byte copies of the source (tfds images keep their encoded bytes);
* ``manifest.csv``: ``split, path, class, origin`` per image (``path`` relative to
  ``data/fetch``; ``class`` the source's name of the image's class);
* ``fetch.json``: the source, its ``classes`` (every class folder sorted by name, or the tfds
  ``ClassLabel`` names in label order), split sizes, whether the data is synthetic, every file
  that was skipped as undecodable (path and reason; ``fetch.on_bad_image: fail`` stops instead)
  and every non-image file that was ignored (``.DS_Store``, ``README.txt`` ...).

Which output of the model a class is (the label index) is not decided here but by
``model.labels`` in stage ``prepare`` (:mod:`litequant.data.labels`), so the images do not depend on
the model's params.

Sources (``fetch.source``):

* ``folder``: ``<fetch.folder>/<class>/<image>`` (synset folders for ImageNet, e.g. a
  re-organised ILSVRC-2012 val set; any class names for your own classes);
* ``tfds``: a tensorflow-datasets image classification set with a ``label`` ``ClassLabel``
  (``fetch.tfds_name``: ``imagenet_v2/*``, ``imagenette/*``, ``imagenet2012``, ``tf_flowers``,
  ``cats_vs_dogs`` ...); calibration from its ``train`` split where it has one;
* ``synthetic``: generated images with random ImageNet classes, for tests and smoke runs only
  (every report says so).
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from litequant.core import atomic
from litequant.core.errors import PipelineError, relative_path_hint
from litequant.core.offline import OFFLINE_HELP, network_reachable
from litequant.core.params import FetchParams
from litequant.core.quiet import progress
from litequant.data.images import BadImageError, decode_rgb, looks_like_image
from litequant.data.labels import NUM_CLASSES, class_table

SPLITS = ("calibration", "evaluation")
@dataclass(frozen=True)
class Candidate:
    """One source image: where its bytes come from, its class (the source's name), and a
    readable origin."""

    class_name: str
    origin: str
    path: Path | None = None
    data: bytes | None = None
    name: str = ""

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


@dataclass
class Selection:
    """The chosen images of each split, the source's classes and the files skipped on the way."""

    splits: dict[str, list[Candidate]]
    classes: list[str] = field(default_factory=list)
    bad_images: list[dict[str, str]] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)


# --- sources -----------------------------------------------------------------------------------

def _listing(folder: Path) -> list[Path]:
    """The entries of ``folder`` sorted by name; an unreadable folder is a :class:`PipelineError`
    naming it."""
    try:
        return sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as error:
        raise PipelineError(f"fetch.folder: cannot list {folder} "
                            f"({error.strerror or error})") from None


def scan_folder(root: str | Path) -> tuple[list[Candidate], list[str], list[str]]:
    """List a folder of class folders ``<root>/<class>/<image>`` in sorted order.

    Returns the candidate images, the class folder names sorted by name (the order Keras'
    ``image_dataset_from_directory`` gives them, empty ones included) and the non-image files
    that were ignored (hidden files, ``README.txt`` ...). Raises :class:`PipelineError` naming
    the path when the folder is missing, empty or flat (images but no class folders).
    """
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"fetch.folder: {root} is not a folder{relative_path_hint(root)} "
                            "(expected a folder of class folders <folder>/<class>/<image>)")
    candidates: list[Candidate] = []
    ignored: list[str] = []
    entries = _listing(root)
    class_dirs = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    loose_images = [p for p in entries if p.is_file() and looks_like_image(p)]
    if not class_dirs:
        if loose_images:
            raise PipelineError(
                f"fetch.folder: {root} holds {len(loose_images)} images but no class folders; "
                "expected one folder per class (a WordNet synset for ImageNet), e.g. "
                f"{root}/n01440764/{loose_images[0].name}")
        raise PipelineError(f"fetch.folder: {root} is empty (expected one folder per class, "
                            "e.g. n01440764/ or tench/, holding that class's images)")
    ignored += [str(p) for p in entries if p.is_file() and not looks_like_image(p)]
    for class_dir in class_dirs:
        for path in _listing(class_dir):
            if path.is_dir():
                ignored.append(f"{path}/")
            elif looks_like_image(path):
                candidates.append(Candidate(class_name=class_dir.name, origin=str(path),
                                            path=path, name=path.name))
            else:
                ignored.append(str(path))
    if not candidates:
        raise PipelineError(f"fetch.folder: no images in the class folders of {root} "
                            "(image files end in .JPEG, .jpg, .png, ...)")
    return candidates, [p.name for p in class_dirs], ignored


def synthetic_candidates(count: int, seed: int) -> list[Candidate]:
    """``count`` generated 64x64 PNG images with random ImageNet labels (smoke tests only)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    synsets = class_table().synsets
    candidates = []
    for index in range(count):
        label = int(rng.integers(NUM_CLASSES))
        base = rng.integers(0, 256, size=(1, 1, 3))
        noise = rng.integers(-40, 41, size=(64, 64, 3))
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        name = f"synthetic_{index:05d}.png"
        candidates.append(Candidate(class_name=synsets[label], origin=f"synthetic:{index}",
                                    data=buffer.getvalue(), name=name))
    return candidates


def tfds_class_names(builder, dataset: str) -> list[str]:
    """The names of a tfds dataset's ``label`` feature (a ``ClassLabel``), in label order.

    ImageNet-style datasets (Imagenette, ImageNet-2012, ImageNet-V2) name their labels by
    WordNet synset; others by class name (``tf_flowers``: ``dandelion``, ``daisy`` ...).
    """
    import tensorflow_datasets as tfds

    feature = builder.info.features["label"] if "label" in builder.info.features else None
    if not isinstance(feature, tfds.features.ClassLabel):
        raise PipelineError(f"fetch.tfds_name: {dataset} has no 'label' ClassLabel feature "
                            "(only image classification datasets with one label are supported)")
    return list(feature.names)


def tfds_candidates(params: FetchParams, needed: dict[str, int | None]
                    ) -> tuple[dict[str, list[Candidate]], list[str]]:
    """Candidate images for each split from tensorflow-datasets, encoded bytes kept as they are,
    and the dataset's class names (:func:`tfds_class_names`).

    Downloads and prepares the dataset when it is not prepared yet; checks first (3 s timeout)
    that the download host is reachable, so an offline machine fails at once.
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(params.tfds_name, data_dir=params.tfds_data_dir)
    except Exception as error:  # DatasetNotFoundError, unknown config, bad version ...
        raise PipelineError(f"fetch.tfds_name: {params.tfds_name!r} is not a tensorflow-datasets "
                            f"dataset ({str(error).splitlines()[0]}); ImageNet-style choices: "
                            "imagenet_v2/{matched-frequency,threshold-0.7,topimages}, "
                            "imagenette/{full-size,320px,160px}[-v2], imagenet2012; your own "
                            "classes: tf_flowers, cats_vs_dogs ...") from None
    if not _tfds_prepared(builder):
        manual = params.tfds_manual_dir is not None
        if manual and not Path(params.tfds_manual_dir).is_dir():
            raise PipelineError(f"fetch.tfds_manual_dir: {params.tfds_manual_dir} is not a "
                                "folder (expected the folder holding the manually downloaded "
                                f"archives of {params.tfds_name})")
        if not manual and getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
            raise PipelineError(
                f"fetch.tfds_manual_dir: {params.tfds_name!r} cannot be downloaded "
                "automatically; download its archives yourself (for imagenet2012: "
                "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org) and "
                f"set fetch.tfds_manual_dir to their folder.\n{OFFLINE_HELP}")
        if not manual and not network_reachable("storage.googleapis.com"):
            raise PipelineError(
                f"fetch: tensorflow-datasets {params.tfds_name!r} is not prepared in "
                f"{builder.data_dir} and there is no network to download it.\n{OFFLINE_HELP}")
        config = tfds.download.DownloadConfig(manual_dir=params.tfds_manual_dir)
        try:
            builder.download_and_prepare(download_config=config)
        except Exception as error:  # tfds raises many types; report one line
            raise PipelineError(f"fetch: could not download/prepare {params.tfds_name!r}: "
                                f"{str(error).splitlines()[0] if str(error) else error!r}\n"
                                f"{OFFLINE_HELP}") from None
    splits = list(builder.info.splits.keys())
    if not splits:
        raise PipelineError(f"fetch: tensorflow-datasets {params.tfds_name!r} in "
                            f"{builder.data_dir} has no splits (incomplete preparation?)")
    evaluation_split = next((s for s in ("validation", "test") if s in splits), splits[0])
    calibration_split = "train" if "train" in splits else evaluation_split
    classes = tfds_class_names(builder, params.tfds_name)

    def read(split: str, count: int | None, skip: int) -> list[Candidate]:
        total = builder.info.splits[split].num_examples
        end = total if count is None else min(total, skip + count)
        dataset = builder.as_dataset(split=f"{split}[{skip}:{end}]", shuffle_files=False,
                                     decoders={"image": tfds.decode.SkipDecoding()})
        found = []
        for offset, example in enumerate(progress(tfds.as_numpy(dataset), f"read {split}",
                                                  total=end - skip)):
            index = skip + offset
            origin = f"tfds:{params.tfds_name}/{split}[{index}]"
            found.append(Candidate(class_name=classes[int(example["label"])], origin=origin,
                                   data=bytes(example["image"]), name=f"{split}_{index:06d}.jpg"))
        return found

    # tfds stores examples in a shuffled, fixed order: a prefix of a split is a random sample.
    # Read a pool twice the needed size (margin for bad images) and sample from it with the seed.
    calibration_pool = 2 * needed["calibration"] + 16
    if calibration_split == evaluation_split:
        pool = read(evaluation_split, None if needed["evaluation"] is None
                    else calibration_pool + 2 * needed["evaluation"] + 16, 0)
        return {"pool": pool}, classes
    return {"calibration": read(calibration_split, calibration_pool, 0),
            "evaluation": read(evaluation_split, None if needed["evaluation"] is None
                               else 2 * needed["evaluation"] + 16, 0)}, classes


def _tfds_prepared(builder) -> bool:
    return (Path(builder.data_dir) / "dataset_info.json").exists()


# --- selection ---------------------------------------------------------------------------------

def _validate(candidate: Candidate) -> str | None:
    """None if the candidate decodes as an image, else the reason it does not."""
    try:
        decode_rgb(candidate.path if candidate.path is not None else candidate.read())
    except BadImageError as error:
        return error.reason
    except OSError as error:
        return f"cannot read ({error.strerror or error})"
    return None


def select(pools: dict[str, list[Candidate]], calibration_size: int,
           evaluation_size: int | None, seed: int) -> Selection:
    """Choose the two disjoint splits, deterministically, skipping undecodable files.

    ``pools`` has either one ``"pool"`` (both splits drawn from it, disjoint) or separate
    ``"calibration"`` and ``"evaluation"`` pools. Each pool is permuted with ``seed``; images
    are taken in that order, decoded once to check them, and undecodable ones are recorded in
    ``Selection.bad_images`` and replaced by the next. ``evaluation_size=None`` takes every
    remaining image.
    """
    rng = np.random.default_rng(seed)
    bad_images: list[dict[str, str]] = []

    def take(order: list[Candidate], count: int | None, split: str
             ) -> tuple[list[Candidate], int]:
        """Good images from the front of ``order`` and how many of ``order`` were consumed."""
        taken: list[Candidate] = []
        consumed = 0
        for candidate in progress(order, f"check {split} images", total=count or len(order)):
            if count is not None and len(taken) == count:
                break
            consumed += 1
            reason = _validate(candidate)
            if reason is None:
                taken.append(candidate)
            else:
                bad_images.append({"path": candidate.origin, "reason": reason})
        return taken, consumed

    def shuffled(pool: list[Candidate]) -> list[Candidate]:
        return [pool[i] for i in rng.permutation(len(pool))]

    sizes = {"calibration": calibration_size, "evaluation": evaluation_size}
    if "pool" in pools:
        order = shuffled(pools["pool"])
        wanted = calibration_size + (evaluation_size or 1)
        if len(order) < wanted:
            raise PipelineError(
                f"fetch: the source has {len(order)} images but the splits need {wanted} "
                f"(fetch.calibration_size={calibration_size}, fetch.evaluation_size="
                f"{evaluation_size}); lower them or use a larger source")
        calibration, consumed = take(order, calibration_size, "calibration")
        evaluation, _ = take(order[consumed:], evaluation_size, "evaluation")
    else:
        for split in SPLITS:
            if len(pools[split]) < (sizes[split] or 1):
                raise PipelineError(f"fetch: the {split} source has {len(pools[split])} images, "
                                    f"fewer than fetch.{split}_size={sizes[split]}")
        calibration, _ = take(shuffled(pools["calibration"]), calibration_size, "calibration")
        evaluation, _ = take(shuffled(pools["evaluation"]), evaluation_size, "evaluation")
    chosen = {"calibration": calibration, "evaluation": evaluation}
    for split in SPLITS:
        if not chosen[split] or (sizes[split] is not None and len(chosen[split]) < sizes[split]):
            raise PipelineError(
                f"fetch: only {len(chosen[split])} decodable images for the {split} split, "
                f"fetch.{split}_size asks for {sizes[split] or 'at least 1'} "
                f"({len(bad_images)} undecodable files were skipped)")
    return Selection(splits=chosen, bad_images=bad_images)


# --- output ------------------------------------------------------------------------------------

def write_output(selection: Selection, params: FetchParams, output: Path) -> dict:
    """Write the split folders, ``manifest.csv`` and ``fetch.json`` atomically into ``output``.

    Returns the summary written to ``fetch.json``.
    """
    with atomic.output_folder(output) as tmp:
        rows = []
        for split in SPLITS:
            for candidate in selection.splits[split]:
                relative = Path(split) / _folder_name(candidate.class_name) / candidate.name
                (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
                if candidate.path is not None:
                    shutil.copyfile(candidate.path, tmp / relative)
                else:
                    (tmp / relative).write_bytes(candidate.read())
                rows.append({"split": split, "path": relative.as_posix(),
                             "class": candidate.class_name, "origin": candidate.origin})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["split", "path", "class", "origin"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        (tmp / "manifest.csv").write_text(buffer.getvalue(), "utf-8")
        summary = {
            "source": params.source,
            "description": describe_source(params),
            "synthetic": params.source == "synthetic",
            "classes": selection.classes,
            "seed": params.seed,
            "calibration_images": len(selection.splits["calibration"]),
            "evaluation_images": len(selection.splits["evaluation"]),
            "bad_images": selection.bad_images,
            "bad_image_count": len(selection.bad_images),
            "ignored_files": len(selection.ignored_files),
            "ignored_paths": selection.ignored_files,
        }
        atomic.write_json(tmp / "fetch.json", summary)
    return summary


def _folder_name(class_name: str) -> str:
    """A class name as one folder name (a tfds name may hold ``/``)."""
    name = class_name.replace("/", "_").replace("\\", "_")
    return name if name not in ("", ".", "..") else f"_{name}_"


def describe_source(params: FetchParams) -> str:
    """A one-line human description of the image source, for reports."""
    if params.source == "folder":
        return f"folder {Path(params.folder).name}"
    if params.source == "tfds":
        return f"tfds {params.tfds_name}"
    return "SYNTHETIC images (smoke test only: accuracy is meaningless)"


def fetch(params: FetchParams, output: Path) -> dict:
    """Select and materialise the splits for ``params``; returns the ``fetch.json`` summary."""
    needed = {"calibration": params.calibration_size, "evaluation": params.evaluation_size}
    ignored: list[str] = []
    if params.source == "folder":
        candidates, classes, ignored = scan_folder(params.folder)
        pools = {"pool": candidates}
    elif params.source == "synthetic":
        total = params.calibration_size + (params.evaluation_size or params.calibration_size)
        pools = {"pool": synthetic_candidates(total, params.seed)}
        classes = list(class_table().synsets)
    else:
        pools, classes = tfds_candidates(params, needed)
    selection = select(pools, params.calibration_size, params.evaluation_size, params.seed)
    selection.ignored_files = ignored
    selection.classes = classes
    if selection.bad_images and params.on_bad_image == "fail":
        listing = "; ".join(f"{b['path']} ({b['reason']})" for b in selection.bad_images[:10])
        raise PipelineError(f"fetch: {len(selection.bad_images)} undecodable image file(s) and "
                            f"fetch.on_bad_image is 'fail': {listing}")
    summary = write_output(selection, params, output)
    if selection.bad_images:
        print(f"fetch: skipped {len(selection.bad_images)} undecodable image file(s): "
              + "; ".join(f"{b['path']} ({b['reason']})" for b in selection.bad_images))
    if ignored:
        print(f"fetch: ignored {len(ignored)} non-image file(s)/folder(s), e.g. {ignored[0]}")
    print(f"fetch: {summary['calibration_images']} calibration + "
          f"{summary['evaluation_images']} evaluation images from {summary['description']}")
    return summary

