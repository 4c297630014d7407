"""litequant: a DVC pipeline that converts a float Keras image classifier to LiteRT variants
and measures what each variant costs (accuracy, agreement with float, size, latency).

One module per DVC stage (``fetch``, ``export``, ``prepare``, ``convert``, ``evaluate_keras``,
``evaluate``, ``benchmark``, ``report``) plus a few shared modules (``params``, ``atomic``,
``imagenet``, ``images``, ``preprocessing``, ``litert``, ``metrics``, ``cli``).
"""
