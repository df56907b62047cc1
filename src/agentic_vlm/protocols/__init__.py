"""Protocols: how actions and observations are written. ``get_protocol(name, family)`` builds one by name."""

from ..families import FAMILIES, ModelFamily, family_of
from .arft import ArftProtocol
from .base import Action, Protocol
from .hermes import HermesProtocol
from .vtool import VtoolProtocol

PROTOCOLS = {"arft": ArftProtocol, "vtool": VtoolProtocol, "hermes": HermesProtocol}


def get_protocol(name: str, family=None) -> Protocol:
    """The protocol ``name``. ``hermes`` reads tool calls in the format of the model's ``family``: a registry entry,
    its name, or the model's config (``model.config``); the tag protocols are the same for every model."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; available: {sorted(PROTOCOLS)}")
    if name != "hermes":
        return PROTOCOLS[name]()
    if family is None:
        raise ValueError("the hermes protocol needs the model's family (its tool-call format and templates)")
    if not isinstance(family, ModelFamily):
        family = FAMILIES[family] if isinstance(family, str) and family in FAMILIES else family_of(family)
    return HermesProtocol(family)


__all__ = ["Action", "ArftProtocol", "HermesProtocol", "PROTOCOLS", "Protocol", "VtoolProtocol", "get_protocol"]
