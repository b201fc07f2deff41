"""Placeholders for the parts of torchvision that timm imports but these programs never use.

``timm.data`` subclasses and references torchvision transforms and datasets at import time;
the placeholders are real classes (so subclassing and dictionary keys work), any attribute
of one is another placeholder, and creating or calling one raises, naming what is missing.
"""

from __future__ import annotations


class _Missing(type):
    def __getattr__(cls, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return placeholder(f"{cls.__qualname__}.{name}")

    def __call__(cls, *args: object, **kwargs: object) -> object:
        raise NotImplementedError(
            f"{cls.__qualname__} is not available: torchvision here is a test stub "
            "(examples/stacks/_torchvision_stub/README.md)"
        )


def placeholder(qualname: str) -> type:
    cls = _Missing(qualname.rsplit(".", 1)[-1], (), {})
    cls.__qualname__ = qualname
    return cls


def module_getattr(module: str):
    def __getattr__(name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return placeholder(f"{module}.{name}")

    return __getattr__
