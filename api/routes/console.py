"""The operator console (issue 16): static files under ``/console``, and ``GET /api/v1/me`` for its menus.

The files hold no data and no secret: the page asks for an API key or token (kept in the tab's session storage)
and calls the REST API and the stream with it, so everything it shows is what the caller's roles and scope
allow, as for any other client. The shell is therefore public; ``/api/v1/me`` tells the page who the caller is
(roles, permissions, scope) so it shows only the controls the API would accept.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse

from api.auth import public, requires
from api.deps import SettingsDep
from api.edge import EdgeRoute
from core.auth import Permission, Principal, permissions_of

__all__ = ["CONSOLE_DIR", "me_router", "router"]

#: The console's files (plain HTML, CSS and JavaScript: no build step).
CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
_FILE = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(html|css|js|svg)$")
_TYPES = {"html": "text/html", "css": "text/css", "js": "text/javascript", "svg": "image/svg+xml"}
_WHY = "the console's static files: no data; the page calls the API with the caller's own credentials"

router = APIRouter(prefix="/console", include_in_schema=False, route_class=EdgeRoute)
me_router = APIRouter(tags=["console"], route_class=EdgeRoute)

#: Any role that may use the console for something (every role but the MT5 bridge).
_CONSOLE_USER = (
    Permission.ORDERS_READ,
    Permission.RISK_READ,
    Permission.TRADING_STATE_READ,
    Permission.AUDIT_READ,
    Permission.ACCOUNTS_READ,
)


@router.get("", dependencies=[public(_WHY)])
async def console_root() -> RedirectResponse:
    """The console's page."""
    return RedirectResponse("/console/", status_code=307)


@router.get("/", dependencies=[public(_WHY)])
async def console_index() -> FileResponse:
    """The console's page."""
    return FileResponse(CONSOLE_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/{name}", dependencies=[public(_WHY)])
async def console_file(name: str) -> FileResponse:
    """One of the console's files."""
    path = CONSOLE_DIR / name
    if not _FILE.match(name) or not path.is_file():
        raise HTTPException(404, "no such file")
    return FileResponse(path, media_type=_TYPES[name.rsplit(".", 1)[1]], headers={"Cache-Control": "no-cache"})


@me_router.get("/me")
async def me(settings: SettingsDep, principal: Annotated[Principal, requires(*_CONSOLE_USER)]) -> JSONResponse:
    """Who the caller is: name, roles, permissions and scope (what the console shows and enables)."""
    body: dict[str, Any] = {
        "name": principal.name,
        "roles": sorted(r.value for r in principal.roles),
        "permissions": sorted(p.value for p in permissions_of(principal.roles)),
        "scope": principal.scope.model_dump(mode="json"),
        "authDisabled": not settings.identity_sources(),
        "temporalUi": f"{settings.temporal.ui_url}/namespaces/{settings.temporal.namespace}/workflows",
    }
    return JSONResponse(body)
