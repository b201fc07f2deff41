"""Placeholder (see torchvision/_missing.py)."""

from torchvision._missing import module_getattr

__getattr__ = module_getattr(__name__)
