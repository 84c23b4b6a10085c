"""Test-suite setup shared by ``tests/unit`` and ``tests/integration``.

Having a conftest here makes pytest put ``tests/`` on ``sys.path`` (its default "prepend" import mode),
so that test modules in either folder can import the shared builders in ``tests/_serve_helpers.py``.
"""
