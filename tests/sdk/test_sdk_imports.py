"""The SDK is used by external bots: it may import only httpx, websockets, orjson and stdlib."""

from __future__ import annotations

import ast
import subprocess
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


def test_importing_the_sdk_loads_no_server_code() -> None:
    """`import qunliao.sdk` also runs qunliao/__init__.py: it must stay free of server imports."""
    probe = (
        "import sys, qunliao.sdk; "
        "loaded = [m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'starlette', 'sqlalchemy', 'pydantic', 'uvicorn', 'asyncpg', 'redis')"
        " or (m.startswith('qunliao.') and not m.startswith('qunliao.sdk'))]; "
        "print(','.join(sorted(loaded)))"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == ""
