"""Stage ``fetch``: materialise two disjoint, deterministic splits of labelled images.

Reads ``params.yaml`` section ``fetch`` and writes ``data/fetch/``:

* ``calibration/<class>/<file>`` and ``evaluation/<class>/<file>``: the selected image files,
  byte-for-byte copies of the source (tfds images keep their encoded bytes);
* ``manifest.csv``: ``split, path, class, origin`` per image (``path`` relative to
  ``data/fetch``; ``class`` the source's name of the image's class);
* ``fetch.json``: the source, its ``classes`` (class folders sorted by name, or the tfds
  ``ClassLabel`` names in label order), split sizes, whether the data is synthetic, every file
  that was skipped as undecodable (path and reason; ``fetch.on_bad_image: fail`` stops instead)
  and every non-image file that was ignored (``.DS_Store``, ``README.txt`` ...).

Label indices are assigned by stage ``prepare`` from ``model.labels``.

Sources (``fetch.source``):

* ``folder``: ``<fetch.folder>/<class>/<image>``: synset folders for ImageNet (e.g. a
  re-organised ILSVRC-2012 val set), any class names for your own classes;
* ``tfds``: a tensorflow-datasets image classification set (``fetch.tfds_name``:
  ``imagenet_v2/*``, ``imagenette/*``, ``imagenet2012``, ``tf_flowers``, ``cats_vs_dogs``
  ...); calibration from its ``train`` split where it has one;
* ``synthetic``: generated images, for tests and smoke runs only (every report says so).
"""

from __future__ import annotations

from litequant.core import layout
from litequant.core.cli import run_stage
from litequant.core.params import FetchParams, read_section
from litequant.data.fetching import fetch


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, lambda args: fetch(read_section(FetchParams, args.params),
                                                 layout.FETCH_DIR), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
