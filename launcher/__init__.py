"""``traincheck-run``: starts the sidecar and the traced job (installed as ``traincheck.launcher``)."""
