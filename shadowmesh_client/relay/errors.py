"""Errors of the relay core (kept here so the pure core imports nothing from the asyncio transport)."""

from shadowmesh_client.errors import ConfigError, ShadowMeshError


class EnvelopeError(ShadowMeshError, ValueError):
    """A relay envelope is malformed, or its source does not match the inner frame's sender."""


class RelayConfigError(ConfigError):
    """A relay setting is invalid; the message names the setting."""
