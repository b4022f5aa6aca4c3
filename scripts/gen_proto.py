"""Regenerate the committed Python code for proto/spanmeter/v1/usage.proto.

Usage: python scripts/gen_proto.py [OUT_DIR]   (default: src/spanmeter/_proto)

Needs grpcio-tools (in the [test] extra). tests/test_proto.py runs this into a temporary
directory and fails when the committed code differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = "spanmeter/v1/usage.proto"


def generate(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    code = protoc.main(
        ["protoc", f"-I{ROOT / 'proto'}", f"-I{include}", f"--python_out={out_dir}", f"--pyi_out={out_dir}", PROTO]
    )
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    return out_dir / "spanmeter" / "v1" / "usage_pb2.py"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "src" / "spanmeter" / "_proto"
    print(generate(target))
