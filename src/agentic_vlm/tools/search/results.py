"""What every search backend returns, and the one error they raise."""

from __future__ import annotations

import html
import re
from dataclasses import asdict, dataclass

_HTML_TAG = re.compile(r"<[^>]+>")


class SearchError(Exception):
    """A search that could not be answered. The message names the backend and what failed, for the model to read."""


@dataclass(frozen=True)
class SearchResult:
    """One hit: a title, the text shown for it, and where it comes from (a URL, or a passage id for the local index)."""

    title: str
    snippet: str
    source: str = ""

    @classmethod
    def from_web(cls, title: object, snippet: object, source: object) -> SearchResult:
        """A result built from an API's fields, which may be missing, null, or hold HTML highlighting (Brave's
        ``<strong>``, SearXNG's entities): the model should read plain text."""
        return cls(title=_plain_text(title), snippet=_plain_text(snippet), source=str(source or ""))

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _plain_text(value: object) -> str:
    if not isinstance(value, str):
        return ""
    return " ".join(html.unescape(_HTML_TAG.sub("", value)).split())
