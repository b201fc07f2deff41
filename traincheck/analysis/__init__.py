"""What TrainCheck learns and checks: invariants, relations, preconditions, the checker.

Imported by the sidecar process, the offline tools (``traincheck.cli``) and the
launcher; never by the tracer. Nothing here imports torch.
"""
