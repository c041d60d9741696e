"""The device state file, damaged or hand-edited: every command refuses it with exit 11 and one line
naming the field, and never acts on a value of the wrong type (a list for ``committed``, ``1e400``
for the security floor, an unknown slot ``C`` each ended in an internal error, exit 70)."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.device import StateError, load_config, sim
from edge.device.state import load_state
from tests.device.helpers import run_edge

MALFORMED = {
    "committed is a list": ({"committed": ["A"]}, "committed: ['A'] is not a string"),
    "committed names no slot": ({"committed": "C"}, "committed: 'C' is not one of A, B"),
    "an infinite floor": ({"security_floor": 1e400}, "security_floor: inf is not a whole number"),
    "a negative floor": ({"security_floor": -1}, "security_floor: -1 is negative"),
    "a third slot": ({"slots": {"A": {}, "B": {}, "C": {}}}, "slots: ['A', 'B', 'C'] are not the slots A and B"),
    "a slot status": ({"slots": {"A": {"status": 7}, "B": {}}}, "slots.A.status: 7 is not a string"),
    "an unknown status": ({"slots": {"A": {"status": "fine"}, "B": {}}}, "slots.A.status: 'fine' is not one of"),
    "a slot field": ({"slots": {"A": {"colour": "red"}, "B": {}}}, "slots.A.colour: unknown field"),
    "an operation that is a number": ({"operation": 5}, "operation: 5 is not an object"),
    "an operation without fields": ({"operation": {}}, "operation.kind: missing"),
    "history": ({"history": {"a": 1}}, "history: {'a': 1} is not a list"),
    "a JSON list": ([], "a JSON list, not an object"),
}


@pytest.fixture()
def board(tmp_path, artifacts):
    d = str(tmp_path / "board")
    sim.create(d, "x86-64-efi", artifacts["images"][1], keyring=artifacts["pki"]["keyring"])
    cfg = load_config(os.path.join(d, "device.yaml"))
    return cfg, json.load(open(cfg.state_file))


@pytest.mark.parametrize("what", sorted(MALFORMED))
def test_a_malformed_state_is_refused_naming_the_field(board, capsys, artifacts, what):
    cfg, good = board
    change, needle = MALFORMED[what]
    damaged = {**good, **change} if isinstance(change, dict) else change
    with open(cfg.state_file, "w") as fh:
        json.dump(damaged, fh)
    for command in (["status"], ["boot-check"], ["mark-good"], ["install", artifacts["bundles"][("x86-64-efi", "v2")]]):
        capsys.readouterr()
        assert run_edge("--config", cfg.path, *command) == 11, command
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and "the device state is malformed (" in lines[0] and needle in lines[0], lines
    assert json.load(open(cfg.state_file)) == damaged  # refused, not rewritten


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2, 2**40) | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)
PATHS = [("security_floor",), ("committed",), ("slots",), ("slots", "A"), ("slots", "A", "status"),
         ("slots", "B", "size"), ("slots", "B", "sha256"), ("operation",), ("last_error",), ("history",)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(PATHS), value=JSON)
def test_any_value_anywhere_loads_or_is_a_state_error(board, where, value):
    """A state file with any JSON value put at one of its fields either loads into a state whose
    fields have their types, or is a StateError: nothing else escapes."""
    cfg, good = board
    damaged = json.loads(json.dumps(good))
    node = damaged
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    with open(cfg.state_file, "w") as fh:
        json.dump(damaged, fh)
    try:
        state = load_state(cfg.state_file)
    except StateError as exc:
        assert "move it away to start afresh" in str(exc)
        return
    assert type(state.security_floor) is int and state.committed in (None, "A", "B")
    assert sorted(state.slots) == ["A", "B"] and all(isinstance(r.status, str) for r in state.slots.values())
    assert isinstance(state.history, list)


@pytest.mark.parametrize("change, needle", [({"boots": 1e400}, "boots: inf is not valid"),
                                            ({"backend": ["grub"]}, "backend: ['grub'] is not valid"),
                                            ({"power": "maybe"}, "power: 'maybe' is not valid"),
                                            ({"board": 5}, "board: 5 is not valid"),
                                            ([], "a JSON list, not an object")])
def test_a_damaged_simulator_file_is_refused(board, capsys, change, needle):
    """The virtual board's sim.json: 1e400 boots or a list for the backend ended 'edge sim reboot' and
    'power-cut' in an internal error (exit 70)."""
    cfg, _ = board
    d = os.path.dirname(cfg.path)
    sim_file = os.path.join(d, "sim.json")
    good = json.load(open(sim_file))
    with open(sim_file, "w") as fh:
        json.dump({**good, **change} if isinstance(change, dict) else change, fh)
    for action in ("reboot", "power-cut"):
        capsys.readouterr()
        assert run_edge("sim", action, d) == 11
        lines = capsys.readouterr().err.splitlines()
        assert lines == [f"edge: error: {d}/sim.json is damaged ({needle})"], lines
