"""Console entry points (``robotrl-train``, ``robotrl-eval``)."""
