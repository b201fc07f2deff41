"""The offline commands: ``traincheck-infer``, ``-check``, ``-onlinecheck``, ``-attach``, ``-ps``.

``traincheck-run`` and ``traincheck-collect`` live in ``traincheck.launcher``.
"""
