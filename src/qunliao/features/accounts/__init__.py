"""The accounts feature. Other features use it through this module only."""

from functools import partial

from qunliao.core.principal import Principal
from qunliao.features.accounts import api
from qunliao.features.accounts.invites import Invites, parse_duration
from qunliao.features.accounts.limits import build_limits
from qunliao.features.accounts.service import AccountService
from qunliao.features.wiring import Wiring
from qunliao.realtime.shared_limits import shared_limits_for


def install(wiring: Wiring) -> None:
    settings = wiring.settings
    limited = settings.rate_limits == "on"
    shared = shared_limits_for(settings.bus_url, wiring.clock) if limited else None
    if shared is not None:
        wiring.stops.append(shared.close)
    login_limits, registration_limits = build_limits(settings, wiring.clock, shared)
    invites = wiring.provide(Invites(wiring.db, wiring.clock, wiring.ids, settings.registration))
    accounts = wiring.provide(
        AccountService(wiring.db, wiring.clock, wiring.ids, wiring.hub.revoke_devices,
                       hasher=wiring.password_hasher, login_limits=login_limits,
                       registration_limits=registration_limits, invites=invites,
                       idle_timeout_s=wiring.settings.session_idle_timeout,
                       in_use=wiring.hub.connected_devices,
                       close_here=wiring.hub.close_devices)
    )  # fmt: skip

    async def access_token(token: str | None) -> Principal:
        return await accounts.access_token(token)  # looked up per call: tests may wrap it

    wiring.access_token = access_token
    wiring.authenticate = accounts.authenticate
    wiring.routers.append(partial(api.router, accounts, invites, trusted=settings.proxies()))
    wiring.secret_answers.add(("POST", "/api/v1/sessions"))  # the answer is an access token
    wiring.secret_answers.add(("POST", "/api/v1/admin/invites"))  # the answer is an invite code
    wiring.starts.append(accounts.start)
    wiring.stops.append(accounts.stop)  # writes the last uses still only in memory


__all__ = ["AccountService", "Invites", "install", "parse_duration"]
