"""The SDK is used by external bots: it may import only httpx, websockets, orjson and stdlib."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import qunliao.sdk
import qunliao_sdk

ALLOWED_THIRD_PARTY = {"httpx", "websockets", "orjson"}
SERVER_LIBRARIES = ("fastapi", "starlette", "sqlalchemy", "pydantic", "uvicorn", "asyncpg", "redis")


def test_sdk_imports_only_its_own_dependencies() -> None:
    package = Path(qunliao_sdk.__file__).parent
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
                if top == "qunliao_sdk":
                    continue
                if top in ALLOWED_THIRD_PARTY or top in sys.stdlib_module_names:
                    continue
                offenders.append(f"{source.name}: {name}")
    assert offenders == []


def test_the_sdk_distribution_declares_exactly_those_dependencies() -> None:
    import tomllib

    project = tomllib.loads(
        (Path(__file__).resolve().parents[2] / "sdk" / "pyproject.toml").read_text()
    )["project"]
    assert project["name"] == "qunliao-sdk"
    names = {
        dep.split(">")[0].split("=")[0].split("[")[0].strip() for dep in project["dependencies"]
    }
    assert names == ALLOWED_THIRD_PARTY


def loaded_after(statement: str) -> list[str]:
    probe = (
        f"import sys; {statement}; "
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {SERVER_LIBRARIES!r}"
        " or m == 'qunliao' or m.startswith('qunliao.'))))"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return [name for name in run.stdout.strip().split(",") if name]


def test_importing_the_sdk_loads_no_server_code() -> None:
    assert loaded_after("import qunliao_sdk") == []
    # `import qunliao.sdk` also runs qunliao/__init__.py: it must stay free of server imports.
    assert loaded_after("import qunliao.sdk") == ["qunliao", "qunliao.sdk"]


def test_qunliao_sdk_is_the_same_objects() -> None:
    assert set(qunliao.sdk.__all__) == set(qunliao_sdk.__all__)
    for name in qunliao_sdk.__all__:
        assert getattr(qunliao.sdk, name) is getattr(qunliao_sdk, name), name
    assert qunliao.sdk.Client is qunliao_sdk.client.Client
