"""Settings from JGHUB_* and the systems configuration: defaults that work, errors with lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bus import Topology
from hub.settings import DEFAULT_SYSTEMS_FILE, HubSettings
from hub.systems import SystemsConfigError, load_systems
from mappings import SYSTEMS_ROOT, load_all


def test_defaults_work_on_a_fresh_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JGHUB_AMQP_URL", "JGHUB_DATA_DIR", "JGHUB_PORT", "JGHUB_SYSTEMS_FILE"):
        monkeypatch.delenv(name, raising=False)
    settings = HubSettings()
    assert settings.amqp_url is None
    assert settings.bus_url == "sqlite:///var/bus.sqlite3"
    assert settings.data_dir == Path("var")
    assert (settings.host, settings.port, settings.namespace) == ("127.0.0.1", 8080, "jghub")
    assert settings.systems_file == DEFAULT_SYSTEMS_FILE and DEFAULT_SYSTEMS_FILE.is_file()
    assert settings.mappings_root == SYSTEMS_ROOT
    for name, field in HubSettings.model_fields.items():
        assert field.description, f"setting {name} has no description"


def test_environment_variables_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JGHUB_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    monkeypatch.setenv("JGHUB_PORT", "9001")
    monkeypatch.setenv("JGHUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JGHUB_TRUSTED_PROXIES", '["10.0.0.1"]')
    settings = HubSettings()
    assert settings.bus_url == "amqp://guest:guest@127.0.0.1:5672/%2F"
    assert settings.port == 9001
    assert settings.data_dir == tmp_path
    assert settings.trusted_proxies == ["10.0.0.1"]
    monkeypatch.setenv("JGHUB_AMQP_URL", "")
    assert HubSettings().bus_url == f"sqlite:///{tmp_path}/bus.sqlite3"


def test_a_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JGHUB_PORT", "eighty")
    with pytest.raises(ValidationError, match="port"):
        HubSettings()
    monkeypatch.setenv("JGHUB_PORT", "80")
    monkeypatch.setenv("JGHUB_NAMESPACE", "Has Spaces")
    with pytest.raises(ValidationError, match="namespace"):
        HubSettings()


def test_the_shipped_configuration_loads_and_fits_the_shipped_mappings() -> None:
    config = load_systems(DEFAULT_SYSTEMS_FILE)
    bound = config.bind_mappings(load_all())
    # Every system has its mapping folder, except the collaboration centre inside the hub.
    assert set(bound) == {s.id for s in config.systems if s.auth.scheme != "internal"}
    assert config.system("collaboration").collaboration is not None
    topology = config.topology("jghub")
    assert isinstance(topology, Topology)
    assert {target.name for target in topology.targets} == {
        system.id for system in config.systems if system.routes
    }
    for system in config.systems:
        if system.routes:
            target = topology.target(system.id)
            assert target.routes == system.routes
            assert target.retry_delays == system.retry.tiers


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "systems.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SystemsConfigError) as caught:
        config = load_systems(path)
        config.bind_mappings(load_all())
    return [str(problem) for problem in caught.value.problems]


HEAD = """\
systems:
  - id: eco-env-penalty
    name_zh: 省生态环境厅
    auth: {scheme: api_key, key_env: KEY}
"""


def test_an_unknown_adapter_is_reported_with_its_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        HEAD + "    inbound:\n      - {adapter: carrier_pigeon, message_type: case_batch}\n",
    )
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'systems.yaml'}:6:")
    assert "systems[0].inbound[0]" in found[0]
    assert "no adapter named 'carrier_pigeon'" in found[0] and "rest_push" in found[0]


def test_a_bad_adapter_option_names_the_option_and_value(tmp_path: Path) -> None:
    text = HEAD + (
        "    inbound:\n"
        "      - adapter: xml_push\n"
        "        message_type: case_batch\n"
        "        options: {answer: yaml, colour: blue}\n"
    )
    found = problems(tmp_path, text)
    assert "answer: Input should be 'json' or 'xml' (got 'yaml')" in found[0]
    assert "colour: Extra inputs are not permitted" in found[0]
    assert ":6:" in found[0]


def test_an_outbound_adapter_must_be_a_sender(tmp_path: Path) -> None:
    text = HEAD + "    outbound: {adapter: rest_push}\n    routes: ['#']\n"
    found = problems(tmp_path, text)
    assert "adapter 'rest_push' is a inbound adapter; here a sender is needed" in found[0]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("    routes: ['penalty_case.#']\n", "routes need an outbound section"),
        ("    routes: ['penalty_*.#']\n", "mixes a wildcard with text"),
        ("    retry: {tiers: [10, 0]}\n", "tiers[1] is 0.0"),
        ("    rate_limit: {per_second: 0}\n", "per_second: Input should be greater than 0"),
        ("    colour: blue\n", "colour: Extra inputs are not permitted"),
    ],
)
def test_system_rules(tmp_path: Path, extra: str, expected: str) -> None:
    found = problems(tmp_path, HEAD + extra)
    assert any(expected in problem for problem in found), found


def test_auth_schemes_need_their_parts(tmp_path: Path) -> None:
    text = HEAD.replace("{scheme: api_key, key_env: KEY}", "{scheme: signed_app_key, key_env: K}")
    assert "needs app_key" in problems(tmp_path, text)[0]
    text = HEAD.replace("{scheme: api_key, key_env: KEY}", "{scheme: api_key}")
    assert "needs key_env" in problems(tmp_path, text)[0]
    text = HEAD.replace("{scheme: api_key, key_env: KEY}", "{scheme: mtls}")
    assert "needs client_subject" in problems(tmp_path, text)[0]
    text = HEAD.replace("key_env: KEY", "key_env: 'not a name'")
    assert "key_env" in problems(tmp_path, text)[0]


def test_repeated_ids_and_credentials_are_refused(tmp_path: Path) -> None:
    text = HEAD + HEAD.removeprefix("systems:\n")
    assert "system ids must be unique; repeated: eco-env-penalty" in problems(tmp_path, text)[0]


def test_two_ids_whose_queue_names_would_meet_are_refused(tmp_path: Path) -> None:
    text = HEAD + HEAD.removeprefix("systems:\n").replace("eco-env-penalty", "eco_env_penalty")
    found = problems(tmp_path, text)
    assert (
        "queue names (ids with '-' read as '_') must be unique; repeated: eco_env_penalty"
        in (found[0])
    )


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    text = HEAD + "    colour: blue\n  - id: Bad Id\n    name_zh: x\n"
    found = problems(tmp_path, text)
    assert len(found) == 3
    assert ":5:" in found[0] and "systems[0].colour" in found[0]
    assert ":6:" in found[1] and "systems[1].id" in found[1] and "'Bad Id'" in found[1]
    assert "systems[1].auth: Field required" in found[2]


def test_message_types_are_checked_against_the_mapping_folder(tmp_path: Path) -> None:
    text = HEAD + (
        "    inbound:\n"
        "      - {adapter: xml_push, message_type: case_bach}\n"
        "    outbound:\n"
        "      adapter: outbox\n"
        "      render: {penalty_case: task_push, risk_warning: warning_pushh}\n"
        "    routes: ['#']\n"
    )
    found = problems(tmp_path, text)
    assert len(found) == 3
    assert ":6:" in found[0] and "no inbound message type 'case_bach'" in found[0]
    assert "inbound: case_batch, risk_feedback, task_feedback" in found[0]
    assert "renders dataset 'collaboration_task', not 'penalty_case'" in found[1]
    assert "no outbound message type 'warning_pushh'" in found[2]


def test_a_missing_mapping_folder(tmp_path: Path) -> None:
    found = problems(tmp_path, HEAD.replace("id: eco-env-penalty", "id: moon-base"))
    assert "no mapping folder 'moon-base'" in found[0] and ":2:" in found[0]


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    found = problems(tmp_path, HEAD + "    inbound: [unclosed\n")
    assert "not valid YAML" in found[0] and ":6:" in found[0]


def test_a_route_whose_dataset_has_no_render_entry_is_refused_with_its_line(
    tmp_path: Path,
) -> None:
    text = HEAD + (
        "    outbound:\n"
        "      adapter: outbox\n"
        "      render: {collaboration_task: task_push}\n"
        "    routes:\n"
        "      - collaboration_task.*.*.eco-env-penalty\n"
        "      - risk_warning.*.*.eco-env-penalty\n"
    )
    found = problems(tmp_path, text)
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'systems.yaml'}:10:")
    assert "systems[0].routes[1]" in found[0]
    assert "route 'risk_warning.*.*.eco-env-penalty' selects dataset 'risk_warning'" in found[0]
    assert "risk_warning: cloudevent" in found[0]


def test_departments_carry_checked_credit_codes_and_are_not_shared(tmp_path: Path) -> None:
    bad_code = HEAD + (
        "    departments:\n      - {name: 浙江省生态环境厅, credit_code: '113300000024820669'}\n"
    )
    (found,) = problems(tmp_path, bad_code)
    assert "systems[0].departments[0].credit_code" in found and ":6:" in found
    shared = (
        HEAD
        + "    departments: [{name: 杭州市生态环境局}]\n"
        + "  - id: market-penalty\n    name_zh: 省市场监督管理局\n"
        + "    auth: {scheme: api_key, key_env: KEY2}\n"
        + "    departments: [{name: 杭州市生态环境局}]\n"
    )
    (found,) = problems(tmp_path, shared)
    assert "department names must be unique; repeated: 杭州市生态环境局" in found


def test_an_internal_system_has_no_inbound_channel_and_renders_nothing(tmp_path: Path) -> None:
    head = (
        "systems:\n  - id: collaboration\n    name_zh: 业务协同中心\n    auth: {scheme: internal}\n"
    )
    (found,) = problems(
        tmp_path, head + "    inbound:\n      - {adapter: rest_push, message_type: case_batch}\n"
    )
    assert "an internal system (auth scheme internal) has no inbound channels" in found
    text = head + (
        "    departments: [{name: 浙江省综合行政执法指导办公室}]\n"
        "    outbound: {adapter: outbox, render: {complaint: handling_result}}\n"
        "    routes: ['complaint.*.complaint-platform']\n"
    )
    (found,) = problems(tmp_path, text)
    assert "render complaint as cloudevent" in found


def test_the_reference_feed_is_internal_takes_only_the_lists_datasets_and_one_consumer(
    tmp_path: Path,
) -> None:
    head = "systems:\n  - id: reference-lists\n    name_zh: 监管基础名录\n    reference: {}\n"
    internal = "    auth: {scheme: internal}\n"
    (found,) = problems(tmp_path, head + internal + "    routes: ['complaint.#']\n")
    assert "fed from supervision_item, enforcement_officer, supervised_object" in found
    assert "routes select complaint" in found and ":2:" in found
    keyed = "    auth: {scheme: api_key, key_env: K}\n    routes: ['supervision_item.#']\n"
    (found,) = problems(tmp_path, head + keyed)
    assert "the reference lists' feed runs inside the hub: auth scheme internal" in found
    both = "    outbound: {adapter: outbox, render: {supervision_item: cloudevent}}\n"
    (found,) = problems(tmp_path, head + internal + both + "    routes: ['supervision_item.#']\n")
    assert "no outbound or collaboration section" in found
    # The legitimate twin loads.
    path = tmp_path / "systems.yaml"
    path.write_text(head + internal + "    routes: ['supervision_item.#']\n", encoding="utf-8")
    assert load_systems(path).system("reference-lists").reference is not None


def test_a_scenario_table_naming_a_system_without_departments_is_refused_with_its_line(
    tmp_path: Path,
) -> None:
    text = (
        "systems:\n"
        "  - id: collaboration\n"
        "    name_zh: 业务协同中心\n"
        "    auth: {scheme: internal}\n"
        "    departments: [{name: 浙江省综合行政执法指导办公室}]\n"
        "    collaboration:\n"
        "      scenarios:\n"
        "        '01': market-penalty\n"
        "        '02': collaboration\n"
        "    routes: ['complaint.*.complaint-platform']\n"
    )
    (found,) = problems(tmp_path, text)
    assert ":8:" in found and "systems[0].collaboration.scenarios.01" in found
    assert "'market-penalty' is not a configured system with `departments`" in found
