"""Protocols: how actions and observations are written. ``get_protocol(name)`` builds one by name."""

from .arft import ArftProtocol
from .base import Action, Protocol
from .vtool import VtoolProtocol

PROTOCOLS = {"arft": ArftProtocol, "vtool": VtoolProtocol}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]()
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; available: {sorted(PROTOCOLS)}") from None


__all__ = ["Action", "ArftProtocol", "PROTOCOLS", "Protocol", "VtoolProtocol", "get_protocol"]
