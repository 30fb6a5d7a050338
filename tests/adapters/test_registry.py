"""A third party's protocol plug-in registers by its entry point alone, and mounts what it serves.

The plug-in is a real distribution on sys.path: a module and a dist-info folder whose
entry_points.txt names the class in the group `jghub.adapters`, found by importlib.metadata as an
installed package would be. Nothing of the hub is edited or told its name.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from adapters import registry
from adapters.errors import AdapterConfigError
from hub.app import create_app
from hub.settings import HubSettings
from hub.systems import SystemsConfigError, parse_systems

PLUGIN = '''
"""A pigeon post: a sender whose target fetches what it is sent from the hub."""

from typing import ClassVar

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, ConfigDict, Field

from adapters.base import AdapterContext, Closeable, Sender


class PigeonOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    loft: str = Field(default="roof", description="Where the pigeons wait.")


class PigeonPost(Sender):
    """Hands messages to pigeons."""

    name: ClassVar[str] = "pigeon_post"
    Options: ClassVar[type[BaseModel]] = PigeonOptions

    def deliver(self, body, *, content_type, idempotency_key, envelope):
        raise NotImplementedError

    @classmethod
    def mount_target_routes(
        cls, app_or_router: FastAPI | APIRouter, context: AdapterContext
    ) -> Closeable | None:
        system = context.system.id

        async def loft() -> dict[str, str]:
            return {"system": system, "lease_s": str(context.pull_lease_s)}

        app_or_router.add_api_route(f"/systems/{system}/loft", loft, methods=["GET"])
        return None
'''


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[str]:
    """The distribution pigeon-post 1.0 on sys.path; the registry forgets it afterwards."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "pigeon_post.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    info = site / "pigeon_post-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pigeon-post\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[jghub.adapters]\npigeon_post = pigeon_post:PigeonPost\n"
    )
    sys.path.insert(0, str(site))
    registry.adapters.cache_clear()
    try:
        yield "pigeon_post"
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("pigeon_post", None)
        registry.adapters.cache_clear()


def systems(adapter: str, options: dict[str, str] | None = None) -> dict[str, object]:
    return {
        "systems": [
            {
                "id": "culture-penalty",
                "name_zh": "文化执法",
                "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_UNUSED"},
                "outbound": {
                    "adapter": adapter,
                    "render": {"penalty_case": "cloudevent"},
                    "options": options or {},
                },
                "routes": ["penalty_case.#"],
            }
        ]
    }


def test_a_plug_in_registers_by_its_entry_point_alone(plugin: str) -> None:
    cls = registry.adapter_class(plugin, kinds=["sender"])
    assert cls.__module__ == "pigeon_post" and cls.kind == "sender"
    config = parse_systems(systems(plugin))
    outbound = config.systems[0].outbound
    assert outbound is not None and outbound.options == {"loft": "roof"}  # defaults filled in
    with pytest.raises(SystemsConfigError, match="colour: Extra inputs are not permitted"):
        parse_systems(systems(plugin, {"colour": "grey"}))


def test_the_app_mounts_what_a_sender_says_it_serves(plugin: str, tmp_path: Path) -> None:
    settings = HubSettings(data_dir=tmp_path, outbox_lease_s=7.0)
    app = create_app(settings, systems=parse_systems(systems(plugin)))
    with TestClient(app) as client:
        answer = client.get("/systems/culture-penalty/loft")
    assert answer.status_code == 200
    assert answer.json() == {"system": "culture-penalty", "lease_s": "7.0"}


def test_without_the_distribution_the_name_is_unknown() -> None:
    with pytest.raises(AdapterConfigError, match="no adapter named 'pigeon_post'"):
        registry.adapter_class("pigeon_post")
