"""The sidecar process and the offline tools (installed as ``traincheck.sidecar``).

Nothing here imports torch: the sidecar reads events, never tensors.
"""
