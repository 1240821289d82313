"""Both wheels build, and a bot runs from a venv that holds only the SDK's wheel.

The wheels are built from copies of the tree (setuptools writes build/ and *.egg-info next to
the sources, and tests leave the work tree clean). The venv is a new one without the system's
or this venv's packages (nor pip); pip fetches the SDK's dependencies as configured for this
machine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from qunliao.sdk import Client

from .helpers import PASSWORD, REPO, ServerProcess, next_event_of, running_server
from .test_e2e_examples import live_socket, position_now, text_from

pytestmark = pytest.mark.e2e

SERVER_ONLY = ("fastapi", "uvicorn", "sqlalchemy", "asyncpg", "picows", "argon2", "pydantic")
IGNORED = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".*")


def run(*command: str | Path, timeout: float = 300, **kwargs: object) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return str(done.stdout)


def build_wheel(source: Path, out: Path) -> Path:
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", source, "-w", out)
    return out


def clean_env() -> dict[str, str]:
    """No PYTHONPATH into the work tree, no QUNLIAO_* settings."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("QUNLIAO_")
    }


def test_the_server_wheel_carries_server_and_sdk(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(REPO / "src", tree / "src", ignore=IGNORED)
    shutil.copytree(REPO / "sdk", tree / "sdk", ignore=IGNORED)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tree / name)
    (wheel,) = build_wheel(tree, tmp_path / "dist").glob("qunliao-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"qunliao/sdk/__init__.py", "qunliao_sdk/client.py", "qunliao_sdk/py.typed"} <= names
    assert "qunliao/app.py" in names or any(n.startswith("qunliao/app/") for n in names)


def sdk_only_venv(tmp_path: Path, env: dict[str, str]) -> Path:
    """Build the SDK's wheel, install it (and its dependencies only) into a new venv; returns
    the venv's python, after checking that no server code or dependency is there."""
    copy = tmp_path / "sdk"
    shutil.copytree(REPO / "sdk", copy, ignore=IGNORED)
    (wheel,) = build_wheel(copy, tmp_path / "dist").glob("qunliao_sdk-*.whl")
    assert {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()} == {
        "qunliao_sdk",
        wheel.name.removesuffix("-py3-none-any.whl") + ".dist-info",
    }
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    # No pip inside (ensurepip is the slow part): this pip installs into it with --python.
    run(sys.executable, "-m", "venv", "--without-pip", venv, env=env)
    pip = (sys.executable, "-m", "pip", "--python", python)
    run(*pip, "install", "--quiet", "--no-input", wheel, env=env)
    installed = run(*pip, "list", "--format=freeze", env=env).lower()
    assert "qunliao-sdk==" in installed or "qunliao_sdk==" in installed
    assert not [name for name in SERVER_ONLY if f"\n{name}" in "\n" + installed]
    no_server = subprocess.run(
        [python, "-c", "import qunliao"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert no_server.returncode != 0 and "ModuleNotFoundError" in no_server.stderr
    return python


async def test_a_bot_runs_from_a_venv_with_only_the_sdk_wheel(tmp_path: Path) -> None:
    env = clean_env()
    python = await asyncio.to_thread(sdk_only_venv, tmp_path, env)
    bot_script = tmp_path / "echo_bot.py"  # away from the work tree: nothing else to import
    shutil.copy(REPO / "examples" / "echo_bot.py", bot_script)
    with running_server("sqlite", tmp_path) as server:
        await talk_to_the_bot(server, python, bot_script, tmp_path, env)


async def talk_to_the_bot(
    server: ServerProcess, python: Path, script: Path, workdir: Path, env: dict[str, str]
) -> None:
    async with Client(server.url) as human, Client(server.url) as registrar:
        await human.register("wheel_human", PASSWORD, "人类 Human")
        await human.login("wheel_human", PASSWORD)
        bot_id = await registrar.register("wheel_echo", PASSWORD, "回声 Echo")
        session = await registrar.login("wheel_echo", PASSWORD, device_name="echo-bot")
        token_file = workdir / "echo-bot.token"
        token_file.write_text(session.access_token + "\n", encoding="utf-8")
        token_file.chmod(0o600)
        since = await position_now(registrar)
        group = await human.create_group([bot_id], "轮子 wheel")

        bot = await asyncio.create_subprocess_exec(
            *[str(part) for part in (python, script, "--url", server.url)],
            *["--token-file", str(token_file), "--since", since],
            cwd=workdir,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            ws = await live_socket(human)
            try:
                await human.send_text(group, "你好，机器人 hello bot")
                answer = await next_event_of(ws, text_from(bot_id, group), within=30)
                assert answer["body"]["text"] == "echo: 你好，机器人 hello bot"
            finally:
                await ws.close()
        finally:
            bot.send_signal(signal.SIGINT)
            try:
                raw, _ = await asyncio.wait_for(bot.communicate(), 10)
            except TimeoutError:
                bot.kill()
                raw, _ = await bot.communicate()
        output = raw.decode("utf-8", "replace")
        assert f"echo bot {bot_id} (d_" in output, output
        assert "Traceback" not in output, output
