"""Errors of the device side (exit codes 11, 13 and 14)."""

from __future__ import annotations

from edge.errors import EdgeError


class DeviceError(EdgeError):
    """The device cannot do what was asked: bad configuration, wrong state, slot too small, ..."""

    exit_code = 11


class ConfigError(DeviceError):
    """device.yaml is missing or invalid (the message names the file, line and field)."""


class StateError(DeviceError):
    """The device state file is unreadable or inconsistent."""


class DownloadError(DeviceError):
    """A bundle or delta could not be downloaded: server unreachable, HTTP error, no Range support, or the
    transfer broke off again after the retries. Nothing is wrong with the update itself: try again later
    (an install that had started writing resumes where it stopped)."""

    exit_code = 14


class HealthCheckFailed(DeviceError):
    """The health checks of a boot failed (the trial was rolled back, or the slot was not confirmed)."""

    exit_code = 13
