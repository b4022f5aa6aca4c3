"""API keys: states and their exact 401 messages on HTTP and gRPC, scopes, workspace isolation,
the non-loopback guard, and the `spanmeter keys` CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from click.testing import CliRunner
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from spanmeter.cli import main
from spanmeter.config import parse_config
from spanmeter.errors import ConfigError
from tests.api.conftest import Api, record
from tests.otlp_helpers import json_request, llm_raw_attrs, llm_spans, raw_span, request_of, s

RECORDS = "/api/v1/usage/records"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
READ_PATHS = ("/api/v1/usage/records", "/api/v1/usage/series", "/api/v1/usage/snapshot")


def post_spans(api: Api, headers: dict[str, str], customer: str = "acme") -> httpx.Response:
    body = json_request([raw_span(1, llm_raw_attrs(**{"usage.customer.id": s(customer)}))])
    return api.client.post(
        "/v1/traces", content=body, headers={"content-type": "application/json", **headers}
    )


def grpc_export(api: Api, metadata: list[tuple[str, str]]) -> tuple[grpc.StatusCode, str]:
    body = request_of(llm_spans(1)).SerializeToString()
    with grpc.insecure_channel(api.running.grpc_endpoint) as channel:
        call = channel.unary_unary(EXPORT)
        try:
            call(body, metadata=metadata, timeout=10)
        except grpc.RpcError as error:
            return error.code(), error.details()
    return grpc.StatusCode.OK, ""


def states(api: Api) -> dict[str, str]:
    """An API key in each state, by expected 401 message."""
    inactive, inactive_id = api.key()
    revoked, revoked_id = api.key()
    api.store.set_key_state(inactive_id, "inactive")
    api.store.set_key_state(revoked_id, "revoked")
    return {"Inactive API key": inactive, "Revoked API key": revoked, "Invalid API key": "sm_not-a-key"}


def test_http_read_and_ingest_refuse_each_bad_key_with_its_message(auth_api: Api) -> None:
    for message, key in {**states(auth_api), "Missing API key": ""}.items():
        for path in READ_PATHS:
            response = auth_api.get(path, key or None)
            assert response.status_code == 401, path
            assert response.json() == {"ok": False, "error": message}
            assert response.headers["www-authenticate"] == "Bearer"
        response = post_spans(auth_api, {"x-api-key": key} if key else {})
        assert response.status_code == 401
        # OTLP errors are a google.rpc.Status (16 = UNAUTHENTICATED) in the request's encoding.
        assert response.json() == {"code": 16, "message": message}
    assert auth_api.running.records() == []
    assert auth_api.running.metric("spanmeter_auth_failures_total", {"reason": "unauthenticated"}) == 16


def test_grpc_refuses_each_bad_key_with_its_message(auth_api: Api) -> None:
    for message, key in states(auth_api).items():
        assert grpc_export(auth_api, [("authorization", f"Bearer {key}")]) == (
            grpc.StatusCode.UNAUTHENTICATED,
            message,
        )
        assert grpc_export(auth_api, [("x-api-key", key)]) == (grpc.StatusCode.UNAUTHENTICATED, message)
    assert grpc_export(auth_api, []) == (grpc.StatusCode.UNAUTHENTICATED, "Missing API key")
    assert auth_api.running.records() == []


def test_a_valid_key_ingests_into_its_workspace_over_grpc_and_http(auth_api: Api) -> None:
    key_a, _ = auth_api.key("team-a")
    key_b, _ = auth_api.key("team-b")
    exporter = GrpcExporter(
        endpoint=auth_api.running.grpc_endpoint, insecure=True, headers={"authorization": f"Bearer {key_a}"}
    )
    assert exporter.export(llm_spans(2)) == SpanExportResult.SUCCESS
    exporter.shutdown()
    assert post_spans(auth_api, {"x-api-key": key_b}).status_code == 200
    assert len(auth_api.running.records(workspace="team-a")) == 2
    assert len(auth_api.running.records(workspace="team-b")) == 1
    assert auth_api.running.records(workspace="default") == []


def test_scopes(auth_api: Api) -> None:
    ingest_only, _ = auth_api.key(scopes=("ingest",))
    read_only, _ = auth_api.key(scopes=("read",))
    admin, _ = auth_api.key(scopes=("admin",))
    denied = auth_api.get(RECORDS, ingest_only)
    assert denied.status_code == 403 and denied.json() == {
        "ok": False,
        "error": "API key lacks the 'read' scope",
    }
    assert post_spans(auth_api, {"authorization": f"Bearer {read_only}"}).status_code == 403
    assert grpc_export(auth_api, [("x-api-key", read_only)])[0] == grpc.StatusCode.PERMISSION_DENIED
    assert post_spans(auth_api, {"authorization": f"Bearer {ingest_only}"}).status_code == 200
    assert auth_api.get(RECORDS, read_only).status_code == 200
    assert (
        auth_api.get(RECORDS, admin).status_code == 200
        and post_spans(auth_api, {"x-api-key": admin}).status_code == 200
    )


def test_deactivate_then_activate(auth_api: Api) -> None:
    key, key_id = auth_api.key()
    auth_api.store.set_key_state(key_id, "inactive")
    assert auth_api.get(RECORDS, key).json()["error"] == "Inactive API key"
    auth_api.store.set_key_state(key_id, "active")
    assert auth_api.get(RECORDS, key).status_code == 200
    auth_api.store.set_key_state(key_id, "revoked")
    with pytest.raises(ValueError, match="revoking is final"):
        auth_api.store.set_key_state(key_id, "active")


def test_workspace_isolation_in_every_endpoint(auth_api: Api) -> None:
    key_a, _ = auth_api.key("team-a")
    key_b, _ = auth_api.key("team-b")
    for workspace, tokens in (("team-a", 10), ("team-b", 1000)):
        auth_api.write([
            record(f"{workspace}-{i}", workspace=workspace, total_tokens=tokens, conversation_id=f"{workspace}-c",
                   meta={"team": workspace}, customer_id="shared-customer")
            for i in range(3)
        ])  # fmt: skip
        auth_api.write([
            record(f"{workspace}-e{i}", kind="event", type="SDK_INIT", workspace=workspace, user_id=f"{workspace}-dev{i}",
                   event_family="evaluation", product=_product(workspace))
            for i in range(5)
        ])  # fmt: skip
    for key, mine, theirs in ((key_a, "team-a", "team-b"), (key_b, "team-b", "team-a")):
        items = auth_api.get(RECORDS, key, take=500).json()["items"]
        assert len(items) == 8 and {i["workspace"] for i in items} == {mine}
        assert auth_api.get(RECORDS, key, customer="shared-customer").json()["items"][0]["workspace"] == mine
        assert (
            auth_api.client.get(f"{RECORDS}?meta[team]={theirs}", headers={"x-api-key": key}).json()["items"]
            == []
        )
        tokens = auth_api.get("/api/v1/usage/series", key).json()["tokens"][-1]["total"]
        assert tokens == (30 if mine == "team-a" else 3000)
        snapshot = auth_api.get("/api/v1/usage/snapshot", key).json()
        assert snapshot["tokens"] == tokens and snapshot["conversations"] == 1
        for path in ("/api/v1/adoption", "/api/v1/agent-rank"):
            rows = auth_api.get(path, key, category="ws").json()["rows"]
            assert [r["product"]["id"] for r in rows] == [f"{mine}-product"]
    cursor_a = auth_api.get(RECORDS, key_a, take=1).json()["cursor"]
    assert (
        auth_api.get(RECORDS, key_b, take=1, cursor=cursor_a).status_code == 400
    )  # a cursor is per workspace
    # Without a key, the public adoption endpoint shows the configured workspace ("default"): nothing here.
    assert auth_api.get("/api/v1/adoption", category="ws").json()["rows"] == []


def test_records_over_a_real_socket_with_a_key(auth_api: Api) -> None:
    key, _ = auth_api.key("team-a")
    auth_api.write([record("mine", workspace="team-a"), record("other", workspace="team-b")])
    url = f"{auth_api.running.http_url}{RECORDS}"
    assert httpx.get(url).json() == {"ok": False, "error": "Missing API key"}
    items = httpx.get(url, headers={"x-api-key": key}).json()["items"]
    assert [i["idempotencyKey"] for i in items] == ["mine"]
    assert httpx.get(f"{auth_api.running.http_url}/healthz").status_code == 200  # health stays public
    assert httpx.get(f"{auth_api.running.http_url}/metrics").status_code == 200


def _product(workspace: str) -> Any:
    from spanmeter.record import Product

    return Product(id=f"{workspace}-product", name=workspace, category="ws")


# --- config guard -------------------------------------------------------------------------------
def _exposed(**auth: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "receivers": {
            "otlp": {
                "protocols": {"grpc": {"endpoint": "0.0.0.0:4317"}, "http": {"endpoint": "127.0.0.1:4318"}}
            }
        }
    }
    if auth:
        raw["auth"] = auth
    return raw


def test_non_loopback_without_auth_is_refused_with_an_explanation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(_exposed(), {})
    (problem,) = error.value.problems
    assert problem.startswith(
        "receivers::otlp::protocols::grpc::endpoint: 0.0.0.0:4317 is not a loopback address"
    )
    assert "auth::enabled: true" in problem and "auth::allow_unauthenticated: true" in problem
    parse_config(_exposed(enabled=True), {})
    parse_config(_exposed(allow_unauthenticated=True), {})
    parse_config({"receivers": {"otlp": {"protocols": {"http": {"endpoint": "localhost:4318"}}}}}, {})
    path = tmp_path / "exposed.yaml"
    path.write_text(yaml.safe_dump(_exposed()))
    result = CliRunner().invoke(main, ["validate-config", "-c", str(path)])
    assert result.exit_code == 1 and "is not a loopback address" in result.output


# --- CLI ----------------------------------------------------------------------------------------
def test_keys_cli(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"storage": {"sqlite": {"path": str(tmp_path / "keys.db")}}}))
    run = lambda *args: CliRunner().invoke(main, ["keys", *args, "-c", str(config)])
    created = run("create", "--workspace", "team-a", "--name", "ci", "--scope", "ingest")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("sm_") and len(secret) > 40
    listed = run("list", "--json")
    (row,) = json.loads(listed.stdout)
    assert row["workspace"] == "team-a" and row["scopes"] == "ingest" and row["state"] == "active"
    assert secret not in listed.stdout and secret[:10] == row["prefix"]
    table = run("list").stdout
    assert row["id"] in table and secret not in table
    assert run("deactivate", row["id"]).stdout.strip() == f"{row['id']}: inactive"
    assert run("activate", row["id"]).stdout.strip() == f"{row['id']}: active"
    assert run("revoke", row["id"]).stdout.strip() == f"{row['id']}: revoked"
    again = run("activate", row["id"])
    assert again.exit_code == 1 and "revoking is final" in again.output
    missing = run("revoke", "key_nope")
    assert missing.exit_code == 1 and "no key with id 'key_nope'" in missing.output
    assert json.loads(run("list", "--json", "--workspace", "other").stdout) == []


@pytest.mark.parametrize("command", ["create", "list", "deactivate", "activate", "revoke"])
def test_keys_commands_have_help(command: str) -> None:
    result = CliRunner().invoke(main, ["keys", command, "--help"])
    assert result.exit_code == 0 and "Usage: " in result.output
