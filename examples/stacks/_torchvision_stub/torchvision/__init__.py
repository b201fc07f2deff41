"""Minimal stand-in for torchvision in the stack-test environment (see ../README.md)."""

__version__ = "0.0.0+traincheck-test-stub"
