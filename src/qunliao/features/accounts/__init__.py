"""The accounts feature. Other features use it through this module only."""

from functools import partial

from qunliao.core.principal import Principal
from qunliao.features.accounts import api
from qunliao.features.accounts.service import AccountService
from qunliao.features.wiring import Wiring


def install(wiring: Wiring) -> None:
    accounts = wiring.provide(
        AccountService(wiring.db, wiring.clock, wiring.ids, wiring.hub.revoke_devices,
                       hasher=wiring.password_hasher,
                       idle_timeout_s=wiring.settings.session_idle_timeout,
                       in_use=wiring.hub.connected_devices)
    )  # fmt: skip

    async def access_token(token: str | None) -> Principal:
        return await accounts.access_token(token)  # looked up per call: tests may wrap it

    wiring.access_token = access_token
    wiring.authenticate = accounts.authenticate
    wiring.routers.append(partial(api.router, accounts))
    wiring.secret_answers.add(("POST", "/api/v1/sessions"))  # the answer is an access token
    wiring.starts.append(accounts.start)
    wiring.stops.append(accounts.stop)  # writes the last uses still only in memory


__all__ = ["AccountService", "install"]
