"""The file backend's env format and its simulated bootloader."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bsp.bootctl import filebackend, make_backend
from bsp.bootctl.errors import BootControlError
from bsp.bootctl.sim import prepare_board, simulate_boot

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,15}", fullmatch=True)
VALUES = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=40)


@settings(max_examples=300)
@given(variables=st.dictionaries(NAMES, VALUES, max_size=10))
def test_round_trip(variables):
    assert filebackend.parse(filebackend.render(variables)) == variables


@settings(max_examples=300)
@given(text=st.text(max_size=300))
def test_hostile_text(text):
    try:
        variables = filebackend.parse(text)
    except BootControlError:
        return
    assert all("\n" not in v for v in variables.values())


def test_value_with_line_break_is_refused():
    with pytest.raises(BootControlError, match="line break"):
        filebackend.render({"A": "x\ny"})


def test_simulated_bootloader_on_the_file(tmp_path):
    settings = prepare_board("file", tmp_path)
    assert open(settings["env"]).read() == (filebackend.HEADER + "BOOT_A_LEFT=3\nBOOT_B_LEFT=3\nBOOT_ORDER=A B\n")
    simulate_boot("file", settings)
    assert open(settings["cmdline"]).read() == "edge.slot=A edge.sim=file\n"
    assert filebackend.read_env_file(tmp_path / "bootenv")["BOOT_A_LEFT"] == "2"
    make_backend("file", settings).mark_good("A")
    assert filebackend.read_env_file(tmp_path / "bootenv")["BOOT_A_LEFT"] == "3"
