"""The code tool and its sandbox.

- :mod:`.tool`: :class:`CodeTool`, the ``<code>`` action.
- :mod:`.sandbox`: :class:`Sandbox`, the trainer's side: a pool of isolated worker processes, with its limits.
- :mod:`.worker`, :mod:`.runner`, :mod:`.jail`: what runs in a worker (its process tree, the code's execution,
  the Linux confinement). They import only the standard library, numpy, Pillow and OpenCV.
- :mod:`.wire`: the frames that carry calls and images between these processes.
"""

from .sandbox import ExecutionResult, Isolation, Sandbox, SandboxConfig, SandboxUnavailableError
from .tool import CodeTool

__all__ = ["CodeTool", "ExecutionResult", "Isolation", "Sandbox", "SandboxConfig", "SandboxUnavailableError"]
