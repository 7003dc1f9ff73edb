"""Open vSwitch's C JSON parser for the OVSDB connection, taken from the host when PyPI's lacks it.

The `ovs` wheel from PyPI parses OVSDB's JSON-RPC in pure Python: with a thousand ports, the
first copy of the tables takes most of the plugin's start. Open vSwitch's own C parser
(`ovs._json`) is built only where libopenvswitch is, and Debian's python3-openvswitch (a
dependency of openvswitch-switch) ships it for Debian's python3. When the installed `ovs`
has no parser of its own, this loads that extension, checks it on a sample, and tells `ovs.json`
to use it, exactly as `ovs.json` does itself when `ovs._json` imports.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import ovs
import ovs.json

LOG = logging.getLogger(__name__)

#: Where Debian's python3-openvswitch puts the extension.
SYSTEM_OVS_DIRS = ("/usr/lib/python3/dist-packages/ovs",)

_SAMPLE = '{"id":1,"result":{"Interface":{"u":{"new":{"name":"é","ofport":["set",[]]}}}}}'


def use_c_parser(search_dirs: Sequence[str] = SYSTEM_OVS_DIRS) -> str:
    """Make `ovs.json` parse with the C extension if one loads and works; return the parser
    now in use ("C" or "PYTHON"). Call before the first OVSDB connection."""
    if ovs.json.PARSER == ovs.json.PARSER_C:
        return str(ovs.json.PARSER)
    for directory in search_dirs:
        module = _load(Path(directory))
        if module is None:
            continue
        sys.modules["ovs._json"] = module
        ovs._json = module
        # ovs.json.Parser looks up `ovs._json` through the module global `ovs`, which its own
        # `import ovs._json` would have bound.
        ovs.json.ovs = ovs
        ovs.json.PARSER = ovs.json.PARSER_C
        LOG.debug("OVSDB JSON parser: C, from %s", module.__file__)
        return str(ovs.json.PARSER)
    LOG.debug("OVSDB JSON parser: pure Python (no usable ovs._json in %s)", list(search_dirs))
    return str(ovs.json.PARSER)


def _load(directory: Path) -> ModuleType | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = directory / f"_json{suffix}"
        if not path.is_file():
            continue
        try:
            loader = importlib.machinery.ExtensionFileLoader("ovs._json", str(path))
            spec = importlib.util.spec_from_file_location("ovs._json", path, loader=loader)
            if spec is None:
                continue
            module = importlib.util.module_from_spec(spec)
            loader.exec_module(module)
            if _works(module):
                return module
        except (ImportError, OSError) as e:
            LOG.debug("cannot use %s: %s", path, e)
    return None


def _works(module: ModuleType) -> bool:
    """The extension parses a sample as ovs.jsonrpc uses it (the same API since Open vSwitch
    2.x: feed, is_done, finish)."""
    try:
        parser = module.Parser()
        parser.feed(_SAMPLE)
        return bool(parser.is_done()) and parser.finish() == {
            "id": 1,
            "result": {"Interface": {"u": {"new": {"name": "é", "ofport": ["set", []]}}}},
        }
    except Exception:  # any surprise means: do not use it
        LOG.debug("ovs._json failed its sample", exc_info=True)
        return False
