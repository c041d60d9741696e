"""The device side: configuration, durable state, install into the inactive slot, boot-check, virtual board.

The names below load their submodule on first use (edge.lazy): a command that needs one part,
e.g. ``edge delta apply`` reading edge.device.source, does not load the install machinery.
"""

from typing import TYPE_CHECKING

from edge.lazy import lazy_exports

if TYPE_CHECKING:
    from .config import DeviceConfig, HealthConfig, load_config
    from .control import BootCheckResult, boot_check, mark_bad, mark_good, rollback, status
    from .errors import ConfigError, DeviceError, DownloadError, HealthCheckFailed, StateError
    from .install import InstallResult, Installer

_EXPORTS = {
    "DeviceConfig": ".config", "HealthConfig": ".config", "load_config": ".config",
    "BootCheckResult": ".control", "boot_check": ".control", "mark_bad": ".control", "mark_good": ".control",
    "rollback": ".control", "status": ".control",
    "ConfigError": ".errors", "DeviceError": ".errors", "DownloadError": ".errors",
    "HealthCheckFailed": ".errors", "StateError": ".errors",
    "InstallResult": ".install", "Installer": ".install",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

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
