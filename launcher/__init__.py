"""``traincheck-run``: starts the sidecar and the traced job.

Installed as ``traincheck.launcher`` (a top-level ``launcher`` would collide).
"""
