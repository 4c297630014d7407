"""litequant: convert a float Keras image classifier to LiteRT variants and measure what each
costs (accuracy on held-out images, agreement with the float model, size, latency).

The library behind the DVC stages in ``stages/``: see docs/design.md, "Code layout", for a map
of the modules.
"""
