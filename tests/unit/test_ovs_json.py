"""Choosing Open vSwitch's C JSON parser: each case in a fresh interpreter, because the choice
is process-wide (it is a setting of the `ovs` library)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from docker_ovs_plugin.adapters.ovs_json import SYSTEM_OVS_DIRS

PROBE = """
import sys
from docker_ovs_plugin.adapters import ovs_json
import ovs.json
used = ovs_json.use_c_parser(sys.argv[1:])
# Whatever was chosen must parse OVSDB's JSON-RPC the way ovs.jsonrpc feeds it.
parser = ovs.json.Parser()
text = '{"id":7,"result":{"Bridge":{"x":{"new":{"name":"br-é","ports":["set",[]]}}}}}'
used_up = parser.feed(text)  # bytes with the C parser, characters with Python's
rest = text.encode()[used_up:] if ovs.json.PARSER == ovs.json.PARSER_C else text[used_up:]
assert parser.is_done() and not rest, (rest, parser.is_done())
assert parser.finish()["result"]["Bridge"]["x"]["new"]["name"] == "br-é"
print(used)
"""


def _probe(*dirs: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *dirs],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_debian_extension_is_used_when_the_host_has_it() -> None:
    if not any(Path(d).glob("_json*.so") for d in SYSTEM_OVS_DIRS):
        pytest.fail("python3-openvswitch's ovs/_json*.so is missing; scripts/setup.sh installs it")
    assert _probe(*SYSTEM_OVS_DIRS) == "C"


def test_pure_python_parser_stays_without_an_extension(tmp_path: Path) -> None:
    assert _probe(str(tmp_path)) == "PYTHON"


def test_a_broken_extension_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "_json.so").write_bytes(b"not an ELF file")
    assert _probe(str(tmp_path), str(tmp_path / "missing")) == "PYTHON"
