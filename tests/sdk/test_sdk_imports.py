"""The SDK is used by external bots: it may import only httpx, websockets, orjson and stdlib."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import qunliao.sdk

ALLOWED_THIRD_PARTY = {"httpx", "websockets", "orjson"}


def test_sdk_imports_only_its_own_dependencies() -> None:
    package = Path(qunliao.sdk.__file__).parent
    offenders = []
    for source in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if name == "qunliao.sdk" or name.startswith("qunliao.sdk."):
                    continue
                if top in ALLOWED_THIRD_PARTY or top in sys.stdlib_module_names:
                    continue
                offenders.append(f"{source.name}: {name}")
    assert offenders == []
