"""A setup-only qunliao server whose password hashing is cheap, so that creating the benchmark's
hundreds of accounts takes seconds instead of minutes (argon2's default costs ~0.1 s a hash on
one core). The hashes carry their parameters, so the real `qunliao serve` that runs the workloads
on the same database accepts them; the workloads themselves use tokens and never hash.

    python -m bench.harness.qunliao_setup PORT
"""

from __future__ import annotations

import sys

import uvicorn
from argon2 import PasswordHasher

from qunliao.app import build_services, create_app
from qunliao.settings import load_settings


def main(port: int) -> None:
    settings = load_settings()
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    services = build_services(settings, password_hasher=hasher)
    app = create_app(settings, services=services, auto_migrate=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main(int(sys.argv[1]))
