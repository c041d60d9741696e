"""Errors of the device side (exit codes 11 and 13)."""

from __future__ import annotations

from edge.errors import EdgeError


class DeviceError(EdgeError):
    """The device cannot do what was asked: bad configuration, wrong state, slot too small, ..."""

    exit_code = 11


class ConfigError(DeviceError):
    """device.yaml is missing or invalid (the message names the file, line and field)."""


class StateError(DeviceError):
    """The device state file is unreadable or inconsistent."""


class HealthCheckFailed(DeviceError):
    """The health checks of a boot failed (the trial was rolled back, or the slot was not confirmed)."""

    exit_code = 13
