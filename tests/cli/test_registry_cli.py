"""``modelserve registry ...`` and ``python -m modelserve``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelserve._registry import Registry
from modelserve.cli import main

ROOT = Path(__file__).resolve().parents[2]


def cli(capsys, root: Path, *args: str) -> tuple[int, str, str]:
    rc = main(["registry", "--root", str(root), *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_workflow(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "reg"
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(b"a" * 100)
    b.write_bytes(b"b" * 100)
    rc, out, _ = cli(capsys, root, "add", "det", str(a), "--alias", "prod", "--meta", "team=vision")
    assert rc == 0 and out.startswith("det:1\tsha256:")
    rc, out, _ = cli(capsys, root, "add", "det", str(b), "--version", "v2")
    assert rc == 0 and out.startswith("det:v2")
    rc, out, _ = cli(capsys, root, "ls")
    assert "det\t2 version(s)" in out and "prod->1" in out
    rc, out, _ = cli(capsys, root, "ls", "det", "--json")
    data = json.loads(out)
    assert [v["version"] for v in data["versions"]] == ["1", "v2"] and data["aliases"] == {"prod": "1"}
    rc, out, _ = cli(capsys, root, "show", "det@prod", "--json")
    assert json.loads(out)["metadata"] == {"team": "vision"}
    assert cli(capsys, root, "alias", "det", "prod", "v2")[1].startswith("det@prod -> v2")
    assert cli(capsys, root, "rollback", "det", "prod")[1].startswith("det@prod -> 1")
    rc, out, _ = cli(capsys, root, "lock", "det@prod", "det:v2")
    assert rc == 0 and (tmp_path / "modelserve.lock").exists()
    rc, out, _ = cli(capsys, root, "verify")
    assert rc == 0 and out.startswith("ok: 2 version(s)")
    rc, out, _ = cli(capsys, root, "export", "det:v2", str(tmp_path / "v2.tar"))
    assert rc == 0
    rc, out, _ = main(["registry", "--root", str(tmp_path / "other"), "import", str(tmp_path / "v2.tar"), "--alias", "prod"]), *capsys.readouterr()
    assert rc == 0 and Registry(tmp_path / "other").resolve("det@prod").version == "v2"
    rc, out, err = main(["registry", "--root", str(tmp_path / "third"), "import", str(tmp_path / "v2.tar"),
                         "--max-bytes", "8"]), *capsys.readouterr()
    assert rc == 1 and "more than max_bytes=8; refused" in err
    assert not (tmp_path / "third" / "models").exists() or not list((tmp_path / "third" / "models").iterdir())
    with pytest.raises(SystemExit):
        main(["registry", "--root", str(tmp_path / "third"), "import", str(tmp_path / "v2.tar"), "--max-bytes", "lots"])
    assert "expected a positive size" in capsys.readouterr().err
    rc, out, _ = cli(capsys, root, "gc", "--dry-run")
    assert rc == 0 and "(dry run)" in out
    rc, out, _ = cli(capsys, root, "gc")
    assert rc == 0
    # errors: exit 1 with a message, registry untouched
    rc, out, err = cli(capsys, root, "add", "det", str(b), "--version", "1")
    assert rc == 1 and "error: version det:1 already exists" in err
    rc, _, err = cli(capsys, root, "show", "det:nope")
    assert rc == 1 and "no version 'nope'" in err
    rc, _, err = cli(capsys, root, "add", "../evil", str(a))
    assert rc == 1 and "model name" in err
    rc, _, err = cli(capsys, root, "rollback", "det", "prod")
    assert rc == 1
    # a tampered file makes verify fail
    mv = Registry(root).resolve("det:1")
    os.chmod(mv.path, 0o644)
    mv.path.write_bytes(b"A" * 100)
    rc, out, _ = cli(capsys, root, "verify")
    assert rc == 1 and "PROBLEM" in out and "FAILED" in out


def test_cli_usage_errors(capsys) -> None:
    with pytest.raises(SystemExit) as ei:
        main(["registry"])
    assert ei.value.code == 2
    with pytest.raises(SystemExit):
        main(["registry", "add", "det"])


def test_python_m_modelserve_uses_modelserve_home(tmp_path: Path) -> None:
    src = tmp_path / "m.onnx"
    src.write_bytes(b"m" * 10)
    env = dict(os.environ, MODELSERVE_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))

    def run(*a: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "modelserve", "registry", *a], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    r = run("add", "det", str(src), "--alias", "prod")
    assert r.returncode == 0, r.stderr
    r = run("ls")
    assert r.returncode == 0 and "det" in r.stdout
    assert Registry(tmp_path / "home").resolve("det@prod").version == "1"
