"""``modelserve serve --registry DIR --lock FILE``: what the container's command relies on. The
registry named on the command line is the one references resolve in (whatever MODELSERVE_HOME
says), and a lock file pins each reference to its locked version even after the alias moves;
a reference the lock does not pin, or whose content differs, is refused before serving."""

from __future__ import annotations

import pytest

from modelserve import Registry, cli

from .server import MODELSERVE, env_with, free_port, multipart, request, start

pytest.importorskip("uvicorn")


def _serve(*args: str, env: dict[str, str]):
    port = free_port()
    return start([str(MODELSERVE), "serve", *args, "--http-port", str(port), "--grpc-port", "0",
                  "--log-level", "warning"], port, env=env)


@pytest.fixture
def registries(tmp_path, detector_path, fixed_detector_path):
    """A registry with det:1 (the dynamic detector) at det@prod, then det:2 (its fixed-shape
    variant); a lock file written while prod pointed at det:1; and an empty MODELSERVE_HOME."""
    reg = Registry(tmp_path / "registry")
    reg.register("det", detector_path, alias="prod")
    lock = reg.write_lock(["det@prod"], tmp_path / "modelserve.lock")
    reg.register("det", fixed_detector_path, alias="prod")
    empty = tmp_path / "home"
    empty.mkdir()
    return reg, lock, env_with(MODELSERVE_HOME=str(empty))


def _input_shape(port: int, name: str) -> list[int]:
    status, meta = request(port, "GET", f"/v2/models/{name}")
    assert status == 200, meta
    return meta["inputs"][1]["shape"]  # the engine's own input: dynamic [-1, 3, -1, -1] or fixed


def test_the_registry_flag_is_where_references_resolve(registries):
    reg, _, env = registries
    with _serve("det@prod", "--registry", str(reg.root), env=env) as srv:
        status, meta = request(srv.port, "GET", "/v2/models/det")
        assert status == 200 and meta["versions"] == ["2"]
        assert _input_shape(srv.port, "det") == [1, 3, 640, 640]  # prod is det:2 now
        code, err = srv.stop()
    assert code == 0, err


def test_the_lock_pins_the_locked_version_after_the_alias_moved(registries, detector_path, photo):
    reg, lock, env = registries
    with _serve("det@prod", f"plain={detector_path}", "--registry", str(reg.root), "--lock", str(lock),
                env=env) as srv:
        assert _input_shape(srv.port, "det") == [-1, 3, -1, -1]  # det:1, as locked, not prod's det:2
        # a model file is served as it is: the lock pins references only
        assert _input_shape(srv.port, "plain") == [-1, 3, -1, -1]
        body, headers = multipart(photo("bus.jpg").read_bytes())
        pinned = request(srv.port, "POST", "/v1/models/det/predict", body, headers)
        plain = request(srv.port, "POST", "/v1/models/plain/predict", body, headers)
        assert pinned[0] == plain[0] == 200
        assert [d["xyxy"] for d in pinned[1]["detections"]] == [d["xyxy"] for d in plain[1]["detections"]]
        code, err = srv.stop()
    assert code == 0, err


def test_a_reference_the_lock_does_not_pin_is_refused(registries, capsys):
    reg, lock, _ = registries
    assert cli.main(["serve", "det:2", "--registry", str(reg.root), "--lock", str(lock)]) == 1
    assert "not pinned in lock file" in capsys.readouterr().err


def test_a_lock_whose_digest_differs_from_the_registry_is_refused(tmp_path, registries, capsys):
    reg, lock, _ = registries
    text = lock.read_text()
    digest = reg.resolve("det:1").digest
    other = digest[:-1] + ("0" if digest[-1] != "0" else "1")
    changed = tmp_path / "changed.lock"
    changed.write_text(text.replace(digest, other))
    assert cli.main(["serve", "det@prod", "--registry", str(reg.root), "--lock", str(changed)]) == 1
    err = capsys.readouterr().err
    assert other in err and digest in err


def test_without_the_registry_flag_references_resolve_in_modelserve_home(registries, monkeypatch, capsys):
    reg, lock, env = registries
    monkeypatch.setenv("MODELSERVE_HOME", env["MODELSERVE_HOME"])  # empty: det is unknown there
    assert cli.main(["serve", "det@prod", "--lock", str(lock)]) == 1
    assert f"no model named 'det' in {env['MODELSERVE_HOME']}" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--registry", "--lock"])
def test_a_missing_registry_or_lock_is_refused_by_name(tmp_path, capsys, flag):
    missing = tmp_path / "missing"
    assert cli.main(["serve", "det@prod", flag, str(missing)]) == 1
    err = capsys.readouterr().err
    assert flag in err and str(missing) in err
