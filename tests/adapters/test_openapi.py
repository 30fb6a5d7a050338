"""The OpenAPI security schemes of the credentials no shipped system uses (tests/hub/
test_fresh_hub.py checks those of the shipped configuration through a running hub)."""

from __future__ import annotations

from adapters.openapi import security_requirement, security_scheme
from systems import AuthConfig


def test_a_client_certificate_is_openapis_mutual_tls() -> None:
    auth = AuthConfig(scheme="mtls", client_subject="CN=sthjt-penalty,C=CN")
    found = security_scheme(auth)
    assert found is not None
    name, scheme = found
    assert scheme["type"] == "mutualTLS" and "subject" in scheme["description"]
    assert security_requirement(auth) == [{name: []}]


def test_a_system_inside_the_hub_declares_no_credential() -> None:
    auth = AuthConfig(scheme="internal")
    assert security_scheme(auth) is None
    assert security_requirement(auth) == []


def test_systems_sharing_a_header_share_one_scheme() -> None:
    first = security_scheme(AuthConfig(scheme="api_key", key_env="A"))
    other = security_scheme(AuthConfig(scheme="api_key", key_env="B", header="X-Tsjb-Token"))
    assert first is not None and other is not None
    assert first == security_scheme(AuthConfig(scheme="api_key", key_env="C"))
    assert first[0] != other[0] and other[1]["name"] == "X-Tsjb-Token"
