"""Imported by ``site`` in every Python process started with this folder on PYTHONPATH.

Where ``traincheck`` is importable this is two statements: import ``initialize``,
call it (it chains the ``sitecustomize`` this one shadows). A training job may
also start another interpreter (a system ``python3``, a tool's own venv) that
inherits PYTHONPATH but not our package: there we step aside without a word and
import that interpreter's own ``sitecustomize``, as if this folder were not on
the path, so its output and behaviour are what they would be untraced.
"""

try:
    from traincheck.tracer.bootstrap import initialize
except ImportError:
    import importlib
    import os
    import sys

    _here = os.path.dirname(os.path.abspath(__file__))
    _saved_path = list(sys.path)
    _ours = sys.modules.pop("sitecustomize", None)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    try:
        importlib.import_module("sitecustomize")
    except ImportError as _exc:
        if _exc.name != "sitecustomize":
            raise  # their module failed: ``site`` reports it exactly as untraced
    finally:
        sys.path[:] = _saved_path
        if _ours is not None:  # none of theirs: ``site`` still looks ours up when we return
            sys.modules.setdefault("sitecustomize", _ours)
else:
    initialize()
