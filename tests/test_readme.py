"""README.md's quick start, checked in the suite: its span sent to `spanmeter serve`, its
`spanmeter records` commands run as written, their outputs compared with what it shows.

scripts/quickstart-check does the same from a clean clone, with the install and on the default
ports; here the collector runs on free ports (a config file in the working directory) so the test
can run beside other collectors.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType

import httpx
import yaml

from tests.test_crash import free_port

ROOT = Path(__file__).resolve().parent.parent


def quickstart_check() -> ModuleType:
    loader = SourceFileLoader("quickstart_check", str(ROOT / "scripts" / "quickstart-check"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # its dataclass looks itself up there
    loader.exec_module(module)
    return module


def spanmeter(command: str) -> list[str]:
    """A README command line, run by this interpreter's spanmeter (its `# comment` dropped)."""
    words = shlex.split(command, comments=True)
    assert words[0] == "spanmeter"
    return [sys.executable, "-m", "spanmeter", *words[1:]]


def test_the_quick_start_prints_what_the_readme_states(tmp_path: Path) -> None:
    check = quickstart_check()
    steps = check.quick_start(ROOT / "README.md")
    assert steps.install_and_serve.endswith("pip install -e . && spanmeter serve")
    http_port = free_port()
    (tmp_path / "spanmeter.yaml").write_text(yaml.safe_dump({  # spanmeter.db: beside it, the working directory
        "receivers": {"otlp": {"protocols": {"grpc": None, "http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
    }))
    serve = subprocess.Popen([*spanmeter("spanmeter serve"), "-c", "spanmeter.yaml"], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(400):
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                if serve.poll() is not None:
                    raise AssertionError(serve.stderr.read() if serve.stderr else "serve exited") from None
                time.sleep(0.05)
        send = steps.send.replace("127.0.0.1:4318", f"127.0.0.1:{http_port}")
        if shutil.which("curl"):
            sent = subprocess.run(["bash", "-c", send], capture_output=True, text=True, check=True).stdout
        else:  # the same request: the README's URL, header and body
            words = shlex.split(send)
            body = words[words.index("-d") + 1]
            sent = httpx.post(words[2], content=body, headers={"content-type": "application/json"}).text
        check.check_send(sent)
        table, as_json = (
            subprocess.run(spanmeter(line), cwd=tmp_path, capture_output=True, text=True, check=True).stdout
            for line in steps.records
        )
        check.check_records(table, as_json, steps.table)
        assert json.loads(as_json)[0]["customer_id"] == "acme"
    finally:
        serve.send_signal(signal.SIGINT)  # Ctrl-C
        assert serve.wait(20) == 0
