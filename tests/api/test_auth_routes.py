"""Every route of the app declares who may call it: a route without a rule fails here.

New routes declare a rule as ``api/auth.py`` shows (``requires(Permission.X)``, ``public(why)``,
``operational(name)``); the matrix in ``test_auth_matrix.py`` then says which roles get through.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from api.auth import Public, route_rules
from api.main import create_app
from core.settings import Settings


def _app() -> object:
    return create_app(Settings(database_url="postgresql://unused", data_dir=Path("unused")))


def test_every_route_declares_exactly_one_access_rule() -> None:
    rules = route_rules(_app())  # type: ignore[arg-type]
    assert len(rules) > 30
    missing = sorted(route for route, found in rules.items() if not found)
    assert not missing, f"routes without a declared access rule (see api/auth.py): {missing}"
    several = sorted(route for route, found in rules.items() if len(found) > 1)
    assert not several, f"routes with more than one access rule: {several}"


def test_only_health_and_the_consoles_static_files_are_public() -> None:
    public = sorted(route for route, found in route_rules(_app()).items() if isinstance(found[0], Public))  # type: ignore[arg-type]
    # The console's files hold no data: its page calls the API with the caller's own credentials.
    assert public == ["GET /console", "GET /console/", "GET /console/{name}", "GET /health"]


def test_a_route_without_a_rule_is_reported() -> None:
    app = _app()
    router = APIRouter(prefix="/quotes")

    @router.get("")
    async def quotes() -> dict[str, str]:
        return {}

    app.include_router(router, prefix="/api/v1")  # type: ignore[attr-defined]

    @app.get("/plain")  # type: ignore[attr-defined]
    async def plain() -> dict[str, str]:
        return {}

    rules = route_rules(app)  # type: ignore[arg-type]
    assert rules["GET /api/v1/quotes"] == [] and rules["GET /plain"] == []
