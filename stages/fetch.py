"""Stage ``fetch``: materialise two disjoint, deterministic splits of ImageNet-style images.

Reads ``params.yaml`` section ``fetch`` and writes ``data/fetch/``:

* ``calibration/<synset>/<file>`` and ``evaluation/<synset>/<file>``: the selected image files,
  byte-for-byte copies of the source (tfds images keep their encoded bytes);
* ``manifest.csv``: ``split, path, synset, label, origin`` per image (``path`` relative to
  ``data/fetch``; ``label`` the ImageNet-1k class index);
* ``fetch.json``: the source, split sizes, whether the data is synthetic, every file that was
  skipped as undecodable (path and reason; ``fetch.on_bad_image: fail`` stops instead) and every
  non-image file that was ignored (``.DS_Store``, ``README.txt`` ...).

Sources (``fetch.source``):

* ``folder``: ``<fetch.folder>/<synset>/<image>``, e.g. a re-organised ILSVRC-2012 val set;
* ``tfds``: a tensorflow-datasets ImageNet-style set (``fetch.tfds_name``: ``imagenette/*``,
  ``imagenet_v2/*``, ``imagenet2012``); calibration from its ``train`` split where it has one;
* ``synthetic``: generated images, for tests and smoke runs only (every report says so).
"""

from __future__ import annotations

from litequant import layout
from litequant.cli import run_stage
from litequant.fetching import fetch
from litequant.params import FetchParams, read_section


def main(argv: list[str] | None = None) -> int:
    return run_stage(__doc__, lambda args: fetch(read_section(FetchParams, args.params),
                                                 layout.FETCH_DIR), argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
