"""The device side: configuration, durable state, install into the inactive slot, boot-check, virtual board."""

from .config import DeviceConfig, HealthConfig, load_config
from .control import BootCheckResult, boot_check, mark_bad, mark_good, rollback, status
from .errors import ConfigError, DeviceError, DownloadError, HealthCheckFailed, StateError
from .install import InstallResult, Installer

__all__ = [
    "BootCheckResult",
    "ConfigError",
    "DeviceConfig",
    "DeviceError",
    "DownloadError",
    "HealthCheckFailed",
    "HealthConfig",
    "InstallResult",
    "Installer",
    "StateError",
    "boot_check",
    "load_config",
    "mark_bad",
    "mark_good",
    "rollback",
    "status",
]
