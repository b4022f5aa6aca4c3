"""`spanmeter demo` as a user runs it: a subprocess of the installed command, nothing configured."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from spanmeter.config import load_config
from spanmeter.store.base import RecordFilter
from spanmeter.store.factory import open_store as build_store


def test_demo_prints_its_records_with_their_cost(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    proc = subprocess.run([sys.executable, "-m", "spanmeter", "demo", "--dir", str(tmp_path / "demo")],
                          capture_output=True, text=True, timeout=20, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    config = load_config(tmp_path / "demo" / "spanmeter.yaml")
    store = build_store(config)
    records = store.recent(RecordFilter(), 100)
    assert sorted((r.kind, r.customer_id) for r in records) == sorted(
        [("llm", "acme")] * 3 + [("llm", "globex"), ("event", "acme"), ("event", "globex"), ("meter", "acme")])
    assert f"{len(records)} usage records:" in out
    for record in records:  # every record is a line naming its customer, type and (llm) model and cost
        model = record.response_model or "-"
        cost = format(record.cost_usd, "f") if record.cost_usd is not None else "-"
        assert any(record.type in line and (record.customer_id or "-") in line and model in line and cost in line
                   for line in out.splitlines()), (record.to_dict(), out)
    acme_cost = sum((r.cost_usd or Decimal(0) for r in records if r.customer_id == "acme"), Decimal(0))
    assert acme_cost > 0
    totals = out.split("Per customer:")[1].splitlines()
    assert any(line.split()[:1] == ["acme"] and line.split()[-1] == format(acme_cost, "f") for line in totals), out
    assert f"spanmeter records -c {tmp_path / 'demo' / 'spanmeter.yaml'}" in out


def test_demo_names_the_extra_when_openai_is_missing(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'openai':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Refuse())\n")
    env = dict(os.environ, PYTHONPATH=str(blocker))
    proc = subprocess.run([sys.executable, "-m", "spanmeter", "demo", "--dir", str(tmp_path / "demo")],
                          capture_output=True, text=True, timeout=20, env=env, check=False)
    assert proc.returncode == 1
    assert "pip install 'spanmeter[demo]'" in proc.stderr and "openai" in proc.stderr


def test_demo_help_names_the_extra() -> None:
    proc = subprocess.run([sys.executable, "-m", "spanmeter", "demo", "--help"], capture_output=True, text=True,
                          check=False)
    assert "spanmeter[demo]" in proc.stdout
