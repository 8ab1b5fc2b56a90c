"""The engine: starts, resumes, approves and cancels runs; the public face of the core.

Headless by design: it imports neither IPython, ipywidgets, graphviz nor duckdb, so
scripts, tests and CI run exactly what a notebook runs. The notebook layer only
adds a view on top of `Engine.subscribe`.
"""

from wfnb.engine.facade import Engine
from wfnb.engine.handle import RunHandle

__all__ = ["Engine", "RunHandle"]
