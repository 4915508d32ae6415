"""docker-compose.yml and .env.example stay consistent with the code (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel

from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _setting_env_names() -> set[str]:
    names = {"DATABASE_URL", "EXODUS_DATABASE_URL"}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            default = field.default
            if isinstance(default, BaseModel):
                walk(type(default), f"{prefix}{name.upper()}__")
            else:
                names.add(f"{prefix}{name.upper()}")

    walk(Settings, "EXODUS_")
    return names


def test_compose_services_reference_what_exists() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = cond["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], (
                    f"{name} waits for {dep} to be healthy, but it has no healthcheck"
                )
            elif condition == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} is awaited as a one-shot step"
            else:
                raise AssertionError(f"unexpected condition {condition}")
        build = svc.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).exists()
        for volume in svc.get("volumes", []):
            host = volume.split(":", 1)[0]
            if host.startswith("./"):
                assert (ROOT / host).exists(), f"{name} mounts missing {host}"


def test_compose_environment_names_real_settings() -> None:
    known = _setting_env_names()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, svc in compose["services"].items():
        for var in svc.get("environment") or {}:
            if var.startswith("EXODUS_") or var == "DATABASE_URL":
                assert var in known, f"{name} sets {var}, which is not a setting"


def test_env_example_names_real_settings_and_every_section() -> None:
    known = _setting_env_names()
    text = (ROOT / ".env.example").read_text()
    used = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.M))
    assert used, ".env.example is empty"
    assert used <= known, used - known


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in sorted(_setting_env_names() - {"EXODUS_DATABASE_URL"}) if f"`{name}`" not in readme]
    assert not missing, f"README's configuration table misses {missing}"


def test_the_compose_temporal_ui_is_read_only() -> None:
    # The Temporal UI is a second control plane (issue 9): in the compose deployment every write switch is on,
    # and the README names each one.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    [ui] = [svc for svc in compose["services"].values() if str(svc.get("image", "")).startswith("temporalio/ui")]
    switches = [
        "TEMPORAL_DISABLE_WRITE_ACTIONS",
        "TEMPORAL_WORKFLOW_TERMINATE_DISABLED",
        "TEMPORAL_WORKFLOW_CANCEL_DISABLED",
        "TEMPORAL_WORKFLOW_SIGNAL_DISABLED",
        "TEMPORAL_WORKFLOW_UPDATE_DISABLED",
        "TEMPORAL_WORKFLOW_RESET_DISABLED",
        "TEMPORAL_BATCH_ACTIONS_DISABLED",
        "TEMPORAL_START_WORKFLOW_DISABLED",
    ]
    env = ui.get("environment") or {}
    assert {name: str(env.get(name)).lower() for name in switches} == dict.fromkeys(switches, "true")
    readme = (ROOT / "README.md").read_text()
    assert "TEMPORAL_DISABLE_WRITE_ACTIONS=true" in readme and "TEMPORAL_START_WORKFLOW_DISABLED" in readme
