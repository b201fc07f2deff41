"""The sidecar process and the trace store (installed as ``traincheck.sidecar``).

Nothing here imports torch: the sidecar reads events, never tensors.
"""
