"""One thin script per DVC stage: ``python -m stages.<stage> --help`` explains each.

A stage script reads its own params section(s), calls the :mod:`litequant` library and writes
its declared outs (paths from :mod:`litequant.core.layout`). No stage imports another.
"""
