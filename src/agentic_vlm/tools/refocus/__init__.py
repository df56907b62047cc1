"""ReFOCUS visual editing for charts and tables (VTool-R1).

- :mod:`.editing`: the twelve editing functions, plain Python (numpy and Pillow only).
- :mod:`.tool`: :class:`RefocusCodeTool`, the code tool with those functions and the row's boxes in its sandbox.
"""

from .editing import FUNCTION_NAMES
from .tool import RefocusCodeTool

__all__ = ["FUNCTION_NAMES", "RefocusCodeTool"]
