"""The device configuration: /etc/edge/device.yaml (path overridable with ``edge --config``).

```yaml
board: x86-64-efi                 # a board name (bsp/); gives the default compatible string
device_id: edge-0001
compatible: edge,x86-64-efi       # optional: defaults to the board's
slots:
  A: /dev/disk/by-partlabel/rootfs-a     # block device or file
  B: /dev/disk/by-partlabel/rootfs-b
  recovery: /dev/disk/by-partlabel/recovery   # optional, never written by installs
boot_control:
  backend: grub                   # grub | uboot | file | rpi | jetson
  settings: {grubenv: /boot/efi/EFI/BOOT/grubenv}
keyring: /etc/edge/keyring.pem    # trusted root certificates
crl: /etc/edge/crl.pem            # optional
allowed_signers: [release]        # optional CN allow-list
state_dir: /data/edge             # on the persistent data partition
boot_attempts: 3
checkpoint_every: 16M             # resume checkpoints while writing a slot
health:
  timeout: 60                     # seconds, for all checks together
  commands: ["/usr/bin/test -e /run/app.ready"]
  units: [ssh.service]            # systemd units that must be active
```

Relative paths are relative to the file's directory (so a virtual board is
relocatable). Every problem is a :class:`ConfigError` naming file, line and field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from edge.build.yamldoc import Document, Node

from .errors import ConfigError

DEFAULT_PATH = "/etc/edge/device.yaml"
BACKENDS = ("grub", "uboot", "file", "rpi", "jetson")
_TOP = ("board", "device_id", "compatible", "slots", "boot_control", "keyring", "crl", "allowed_signers", "state_dir",
        "boot_attempts", "checkpoint_every", "health")


@dataclass(frozen=True)
class HealthConfig:
    timeout: float = 60.0
    commands: tuple[str, ...] = ()
    units: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeviceConfig:
    path: str
    board: str
    device_id: str
    compatible: str
    slots: dict[str, str]
    recovery: str | None
    backend: str
    backend_settings: dict[str, Any]
    keyring: str
    crl: str | None
    allowed_signers: tuple[str, ...] | None
    state_dir: str
    boot_attempts: int = 3
    checkpoint_every: int = 16 << 20
    health: HealthConfig = field(default_factory=HealthConfig)

    @property
    def state_file(self) -> str:
        return os.path.join(self.state_dir, "state.json")


def _size(doc: Document, node: Node, name: str) -> int:
    from edge.squashfs import SquashfsError, parse_block_size

    if isinstance(node.value, int) and not isinstance(node.value, bool):
        value = node.value
    else:
        try:
            value = parse_block_size(str(node.value))
        except SquashfsError:
            raise doc.error(node, name, f"{node.value!r} is not a size (e.g. 16M, 65536)") from None
    if value < 4096:
        raise doc.error(node, name, "must be at least 4K")
    return value


def load_config(path: str | None = None) -> DeviceConfig:
    path = path or os.environ.get("EDGE_CONFIG") or DEFAULT_PATH
    if not os.path.exists(path):
        raise ConfigError(f"{path}: no device configuration (create it, or point --config / $EDGE_CONFIG at one)")
    doc = Document(path, ConfigError)
    base = os.path.dirname(os.path.abspath(path))

    def rel(text: str) -> str:
        return text if os.path.isabs(text) else os.path.normpath(os.path.join(base, text))

    top = doc.mapping(doc.root, "", required=("board", "slots", "boot_control", "keyring", "state_dir"), allowed=_TOP)
    board = doc.string(top["board"], "board")
    compatible = doc.string(top["compatible"], "compatible") if "compatible" in top else ""
    if not compatible:
        try:
            from bsp.boards import BoardRegistry

            compatible = BoardRegistry().get(board).compatible
        except Exception:
            raise doc.error(top["board"], "board", f"unknown board {board!r} and no 'compatible' given") from None
    slots_node = doc.mapping(top["slots"], "slots", required=("A", "B"), allowed=("A", "B", "recovery"))
    slots = {name: rel(doc.string(slots_node[name], f"slots.{name}")) for name in ("A", "B")}
    if os.path.realpath(slots["A"]) == os.path.realpath(slots["B"]):
        raise doc.error(slots_node["B"], "slots.B", "slots A and B are the same device")
    recovery = rel(doc.string(slots_node["recovery"], "slots.recovery")) if "recovery" in slots_node else None
    bc = doc.mapping(top["boot_control"], "boot_control", required=("backend",), allowed=("backend", "settings"))
    backend = doc.string(bc["backend"], "boot_control.backend")
    if backend not in BACKENDS:
        raise doc.error(bc["backend"], "boot_control.backend", f"{backend!r} is not one of {', '.join(BACKENDS)}")
    settings: dict[str, Any] = {}
    if "settings" in bc:
        raw = doc.mapping(bc["settings"], "boot_control.settings", allowed=tuple(bc["settings"].value) if bc["settings"].is_map else ())
        settings = {k: _plain(v) for k, v in raw.items()}
        for key in ("grubenv", "cmdline", "env", "fw_env_config", "default_env", "autoboot", "device_tree", "tryboot_flag"):
            if isinstance(settings.get(key), str):
                settings[key] = rel(settings[key])
        env = settings.get("nvbootctrl_env")
        if isinstance(env, dict):
            settings["nvbootctrl_env"] = {k: rel(v) if k.endswith("STATE") and isinstance(v, str) else v for k, v in env.items()}
    from bsp.bootctl import BootControlError, resolve_settings

    try:
        resolve_settings(backend, settings)
    except BootControlError as exc:
        raise doc.error(bc.get("settings", bc["backend"]), "boot_control.settings", str(exc)) from None
    signers = None
    if "allowed_signers" in top:
        signers = tuple(doc.string(n, "allowed_signers[]") for n in doc.sequence(top["allowed_signers"], "allowed_signers"))
    attempts = doc.integer(top["boot_attempts"], "boot_attempts", minimum=1, maximum=9) if "boot_attempts" in top else 3
    checkpoint = _size(doc, top["checkpoint_every"], "checkpoint_every") if "checkpoint_every" in top else 16 << 20
    health = HealthConfig()
    if "health" in top:
        h = doc.mapping(top["health"], "health", allowed=("timeout", "commands", "units"))
        timeout = 60.0
        if "timeout" in h:
            if not isinstance(h["timeout"].value, (int, float)) or isinstance(h["timeout"].value, bool) or h["timeout"].value <= 0:
                raise doc.error(h["timeout"], "health.timeout", "must be a positive number of seconds")
            timeout = float(h["timeout"].value)
        commands = tuple(doc.string(n, "health.commands[]") for n in doc.sequence(h["commands"], "health.commands")) if "commands" in h else ()
        units = tuple(doc.string(n, "health.units[]") for n in doc.sequence(h["units"], "health.units")) if "units" in h else ()
        health = HealthConfig(timeout, commands, units)
    return DeviceConfig(
        path=os.path.abspath(path),
        board=board,
        device_id=doc.string(top["device_id"], "device_id") if "device_id" in top else os.uname().nodename,
        compatible=compatible,
        slots=slots,
        recovery=recovery,
        backend=backend,
        backend_settings=settings,
        keyring=rel(doc.string(top["keyring"], "keyring")),
        crl=rel(doc.string(top["crl"], "crl")) if "crl" in top else None,
        allowed_signers=signers,
        state_dir=rel(doc.string(top["state_dir"], "state_dir")),
        boot_attempts=attempts,
        checkpoint_every=checkpoint,
        health=health,
    )


def _plain(node: Node) -> Any:
    if node.is_map:
        return {k: _plain(v) for k, v in node.value.items()}
    if node.is_list:
        return [_plain(v) for v in node.value]
    return node.value
