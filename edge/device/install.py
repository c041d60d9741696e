"""The install flow: verify a bundle, stream it into the inactive slot, verify the slot, arm a trial boot.

1. Refuse unless the booted slot is the primary one (no install on top of an unconfirmed trial).
2. Open the bundle (file or URL) and verify signature, chain, compatibility and
   security version — before a single byte is written.
3. Stream the payload into the inactive slot: a full image chunk by chunk, or a
   delta applied against the booted slot (opened read-only). Every chunk is
   verified before it is used. The slot's first 4 KiB (the superblock) are held
   back until the end, so a partly written slot never looks like an image.
4. Hash the whole written slot against the manifest; fsync.
5. Arm a trial boot of the slot with N attempts; record "installed, reboot pending".

Progress is checkpointed (slot fsynced first, then the state file replaced
atomically), so after a power cut the device still boots its good slot and
running the same install again resumes where it stopped. A slot that already
holds the target image (say the trial never started) is re-armed without
writing it again.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from bsp.bootctl import BootControl, make_backend
from bsp.bootctl.base import other_slot
from edge.errors import EdgeError, short_digests
from edge.fsutil import HEAD_HELD_BACK, HeldBackWriter, ShortFileError, remove_if_present, saved_head
from edge.locking import check_target_kind, device_lock

from .config import DeviceConfig
from .errors import DeviceError
from .slots import capacity, check_slot_holds_none_of, hash_slot, open_for_writing, same_device
from .source import is_url, open_source
from .state import DeviceState, Operation, SlotRecord, load_state, save_state

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class InstallResult:
    slot: str
    version: str
    payload_type: str
    resumed_from: int | None  # bytes already written when this run started
    already_installed: bool
    seconds: float
    reboot_command: list[str]
    details: dict[str, Any] = field(default_factory=dict)


def backend_for(config: DeviceConfig) -> BootControl:
    return make_backend(config.backend, config.backend_settings)


def _load_trust(config: DeviceConfig):  # type: ignore[no-untyped-def]
    from signing import load_crls, load_keyring

    if not os.path.exists(config.keyring):
        raise DeviceError(f"{config.keyring}: no keyring of trusted root certificates (device.yaml 'keyring')")
    keyring = load_keyring(config.keyring)
    crl = load_crls(config.crl) if config.crl else None
    return keyring, crl


class _PayloadStream(io.RawIOBase):
    """The verified payload of a bundle as a stream starting at byte ``offset`` (for the delta applier)."""

    def __init__(self, bundle: Any, offset: int) -> None:
        size = bundle.chunk_size
        self.known_size = bundle.payload_size  # bounds a delta checkpoint's position (apply.DeltaOpener)
        self._chunks = bundle.iter_chunks(offset // size)
        self._buf = memoryview(b"")
        self._skip = offset % size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        while not self._buf:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                return 0
            self._buf = memoryview(chunk)[self._skip :]
            self._skip = 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class Installer:
    def __init__(self, config: DeviceConfig, progress: Progress | None = None) -> None:
        self.config = config
        self.progress = progress
        self.backend = backend_for(config)

    def _save(self, state: DeviceState) -> None:
        save_state(self.config.state_file, state)

    def install(self, source: str) -> InstallResult:
        """Install the bundle at ``source`` (a path or URL) into the inactive slot and arm its trial boot.

        Holds the device lock throughout: a second install (or boot-check, mark, rollback) at the same
        time is refused with BusyError, before anything is read or written."""
        with device_lock(self.config.state_dir, "install"):
            return self._install(source)

    def _install(self, source: str) -> InstallResult:
        started = time.monotonic()
        cfg = self.config
        state = load_state(cfg.state_file)
        backend = self.backend
        booted, primary = backend.booted_slot(), backend.primary_slot()
        op = state.operation
        if booted != primary:
            if op is not None and op.step == "installed" and op.slot == primary:
                raise DeviceError(f"slot {primary} holds {op.version}, waiting for its trial boot: reboot to try it "
                                  f"(or 'edge mark-bad {primary}' to cancel) before installing again")
            raise DeviceError(f"the booted slot {booted} is not the primary slot {primary}: an unconfirmed trial is in "
                              f"progress; run 'edge boot-check' or reboot before installing")
        target = other_slot(booted)
        target_path, booted_path = cfg.slots[target], cfg.slots[booted]
        if same_device(target_path, booted_path):
            raise DeviceError(f"slots {booted} and {target} are the same device {target_path}")
        check_target_kind(target_path, DeviceError)  # before reading it: a FIFO would block the install
        check_slot_holds_none_of(target, target_path, cfg.state_file, None if is_url(source) else source)

        from edge.bundle import open_bundle

        keyring, crl = _load_trust(cfg)
        fh: BinaryIO = open_source(source)
        try:
            bundle = open_bundle(fh, name=source)
            bundle.verify(keyring, crl, board=cfg.compatible, installed_security_version=state.security_floor,
                          allowed_cns=cfg.allowed_signers)
            m = bundle.manifest
            if not is_url(source):
                # A local bundle is checked whole before a byte is written, so a bad chunk anywhere
                # leaves the slots untouched. (A download is checked chunk by chunk as it streams.)
                bundle.verify_payload()
            room = capacity(target_path)
            if m.target.size > room:
                raise DeviceError(f"slot {target} ({target_path}) has room for {room} bytes, the image needs {m.target.size}")
            if m.payload_type == "delta":
                booted_rec = state.slots.get(booted)
                assert m.source is not None
                if booted_rec is not None and booted_rec.sha256 and booted_rec.sha256 != m.source.sha256:
                    raise DeviceError(f"this delta updates the image {m.source.sha256[:16]}…, but the booted slot {booted} "
                                      f"holds {booted_rec.version} ({booted_rec.sha256[:16]}…): install a full bundle")
            free = _free_bytes(cfg.state_dir)
            if free < 1 << 20:
                raise DeviceError(f"{cfg.state_dir}: only {free} bytes free for the device state")

            resumed_from: int | None = None
            if op is not None and op.manifest_sha256 == bundle.manifest_sha256 and op.slot == target:
                if op.step in ("verified", "installed"):
                    return self._arm(state, op, target, started, already=True)
                recorded = True
            else:
                # a new install: whatever was half-written before is abandoned (once this one writes)
                if self._slot_holds(target_path, m.target.sha256, m.target.size):
                    self._discard_delta_state(target)
                    op = self._new_op(state, bundle, source, target, step="verified")
                    self._save(state)
                    return self._arm(state, op, target, started, already=True)
                op = self._new_op(state, bundle, source, target, step="writing")
                recorded = False  # saved right before the first write: a refusal before it changes no state

            def begin() -> None:
                nonlocal recorded
                if not recorded:
                    self._discard_delta_state(target)
                    self._save(state)
                    recorded = True

            details: dict[str, Any] = {}
            try:
                if m.payload_type == "full":
                    resumed_from = self._write_full(bundle, state, op, target_path, booted_path, begin)
                elif op.checkpoint and self._delta_finished(target, target_path, m.target.sha256, m.target.size):
                    resumed_from = m.target.size
                else:
                    details = self._write_delta(bundle, state, op, target_path, booted_path, begin)
                    # what the applier found, not what the state hoped (a checkpoint at byte 0 saved nothing)
                    resumed_from = details["resumed_at_pos"] or None
            except EdgeError as exc:
                if recorded:  # the slot was written: say why it is left half-written
                    state.error(f"install of {m.version} into slot {target} failed: {exc}", exc.exit_code)
                    self._save(state)
                raise
            op.step = "verified"
            op.checkpoint = None
            self._save(state)
        finally:
            fh.close()
        result = self._arm(state, op, target, started, already=False)
        result.resumed_from = resumed_from
        result.details = details
        return result

    # ------------------------------------------------------------------ steps
    def _new_op(self, state: DeviceState, bundle: Any, source: str, target: str, step: str) -> Operation:
        m = bundle.manifest
        op = Operation(kind="install", slot=target, bundle=os.path.abspath(source) if os.path.exists(source) else source,
                       manifest_sha256=bundle.manifest_sha256, version=m.version, security_version=m.security_version,
                       payload_type=m.payload_type, target_sha256=m.target.sha256, target_size=m.target.size,
                       step=step, started=int(time.time()))
        state.operation = op
        state.slots[target] = SlotRecord(status="installing", version=m.version, sha256=m.target.sha256,
                                         size=m.target.size, security_version=m.security_version,
                                         updated=int(time.time()))
        state.event("install-started", slot=target, version=m.version, payload=m.payload_type)
        return op

    def _arm(self, state: DeviceState, op: Operation, target: str, started: float, already: bool) -> InstallResult:
        self.backend.set_primary(target, self.config.boot_attempts)
        op.step = "installed"
        state.slots[target].status = "installed"
        state.slots[target].updated = int(time.time())
        state.event("installed", slot=target, version=op.version, reboot_pending=True)
        state.last_error = None
        self._save(state)
        return InstallResult(target, op.version, op.payload_type, None, already, time.monotonic() - started,
                             self.backend.reboot_command())

    def _slot_holds(self, path: str, sha256: str, size: int) -> bool:
        try:
            return hash_slot(path, size) == sha256
        except (DeviceError, OSError):
            return False

    def _delta_finished(self, target: str, target_path: str, sha256: str, size: int) -> bool:
        """A delta install with a checkpoint but no applier state: the applier finished (it removes its
        state once the slot verifies) and the power went before the install recorded it. True when
        the slot indeed holds the image (then it is not written again)."""
        return not os.path.exists(self._delta_state_path(target)) and self._slot_holds(target_path, sha256, size)

    def _discard_delta_state(self, target: str) -> None:
        remove_if_present(self._delta_state_path(target))

    def _delta_state_path(self, target: str) -> str:
        return os.path.join(self.config.state_dir, f"delta-apply-{target}.json")

    def _write_full(self, bundle: Any, state: DeviceState, op: Operation, target_path: str, booted_path: str,
                    begin: Callable[[], None]) -> int | None:
        """Write the payload into the slot, from the operation's checkpoint if it has a usable one;
        returns the byte it resumed at (None: from the start)."""
        m = bundle.manifest
        size = m.target.size
        resume = full_resume_point(op.checkpoint, size, bundle.chunk_size)
        problem = self._write_chunks(bundle, state, op, target_path, booted_path, begin, resume)
        if problem is not None and resume is not None:
            # the checkpoint did not lead to the image (the slot changed since, a damaged state
            # file): start over once, from the first chunk, instead of failing on every run
            resume = None
            problem = self._write_chunks(bundle, state, op, target_path, booted_path, begin, None)
        if problem is not None:
            raise DeviceError(f"slot written from the bundle {problem}; the slot is left unbootable")
        return min(resume[0] * bundle.chunk_size, size) if resume is not None else None

    def _write_chunks(self, bundle: Any, state: DeviceState, op: Operation, target_path: str, booted_path: str,
                      begin: Callable[[], None], resume: tuple[int, bytes] | None) -> str | None:
        """Stream the payload's chunks from ``resume`` (next chunk, held-back head) into the slot and
        hash it; returns what is wrong with the written slot, or None when it holds the image."""
        m = bundle.manifest
        size = m.target.size
        next_chunk, saved = resume if resume is not None else (0, b"")
        head = bytearray(saved) + bytearray(min(HEAD_HELD_BACK, size) - len(saved))
        fd = open_for_writing(target_path, booted_path)
        try:
            out = HeldBackWriter(fd, head)  # the superblock stays off the disk until the slot verifies
            last_cp = next_chunk * bundle.chunk_size
            for index, chunk in enumerate(bundle.iter_chunks(next_chunk), start=next_chunk):
                begin()
                out.write(chunk, index * bundle.chunk_size)
                done = index * bundle.chunk_size + len(chunk)
                if self.progress:
                    self.progress("writing", done, size)
                if done - last_cp >= self.config.checkpoint_every or done == size:
                    os.fsync(fd)
                    op.checkpoint = {"next_chunk": index + 1, "target_pos": done, "head": bytes(head).hex()}
                    self._save(state)
                    last_cp = done
            os.fsync(fd)
            if self.progress:
                self.progress("verifying", 0, size)
            try:
                got = out.sha256(size)
            except ShortFileError as exc:
                return f"ends at byte {exc.pos}, the image has {size}"
            if got != m.target.sha256:
                return "hashes to {}, the manifest says {}".format(*short_digests(got, m.target.sha256))
            out.seal()
            return None
        finally:
            os.close(fd)

    def _write_delta(self, bundle: Any, state: DeviceState, op: Operation, target_path: str, booted_path: str,
                     begin: Callable[[], None]) -> dict:
        from edge.bundle.manifest import delta_image_mismatch
        from edge.delta import apply_delta

        m = bundle.manifest
        assert m.source is not None

        def start(header: Any) -> None:
            # a bundle built from the wrong delta is refused here, before the slot is touched
            mismatch = delta_image_mismatch(header, m.source, m.target)
            if mismatch is not None:
                what, found, want = mismatch
                has, says = short_digests(found.sha256, want.sha256)
                raise DeviceError(f"the bundle's delta has {what} image {has} ({found.size} bytes), its "
                                  f"manifest says {says} ({want.size} bytes): the bundle was built wrong; "
                                  f"rebuild it")
            begin()
        # make sure the target can be opened for writing and is not the booted slot
        os.close(open_for_writing(target_path, booted_path))

        def opener(offset: int) -> BinaryIO:
            return _PayloadStream(bundle, offset)  # type: ignore[return-value]

        def on_checkpoint(st: dict) -> None:
            if not st["target_pos"]:
                return  # the applier's first mark, before any byte: nothing to resume from
            op.checkpoint = {"target_pos": st["target_pos"], "op": st["op"]}
            self._save(state)

        result = apply_delta(booted_path, opener, target_path, state_path=self._delta_state_path(op.slot),
                             progress=(lambda d, t: self.progress("writing", d, t)) if self.progress else None,
                             on_checkpoint=on_checkpoint, checkpoint_bytes=self.config.checkpoint_every, on_start=start,
                             truncate=False)  # a slot file keeps its size, as after a full install
        if result.size != m.target.size:
            raise DeviceError(f"the delta produced {result.size} bytes, the manifest says {m.target.size}")
        # apply_delta hashed the whole written target (and checked it against the delta's header):
        # that hash must also be the signed manifest's, without reading the slot a second time
        if result.sha256 != m.target.sha256:
            raise DeviceError("the slot written from the delta hashes to {}, the manifest says {}".format(
                *short_digests(result.sha256, m.target.sha256)))
        return {"resumed_at_op": result.resumed_at_op, "resumed_at_pos": result.resumed_at_pos,
                "source_check_seconds": result.source_check_seconds}


def full_resume_point(checkpoint: Any, size: int, chunk_size: int) -> tuple[int, bytes] | None:
    """(next chunk, held-back head) of a full install's checkpoint, or None when there is none or it
    is not one this install could have written (then the slot is written from the start)."""
    if not isinstance(checkpoint, dict):
        return None
    nxt = checkpoint.get("next_chunk")
    if not isinstance(nxt, int) or isinstance(nxt, bool) or not 0 < nxt <= -(-size // chunk_size):
        return None
    head = saved_head(checkpoint.get("head"), min(HEAD_HELD_BACK, size))
    return (nxt, head) if head is not None else None


def _free_bytes(directory: str) -> int:
    os.makedirs(directory, exist_ok=True)
    vfs = os.statvfs(directory)
    return vfs.f_bavail * vfs.f_frsize
