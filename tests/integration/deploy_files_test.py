"""Checks deploy/ with what Debian has, against the built ckpt-server:

- the systemd unit passes `systemd-analyze verify` and has its hardening,
  and `cmake --install` writes a unit with the install's paths that passes
  too;
- the Kubernetes manifests parse, with their kinds and required fields,
  and their ports, probes and volumes match the config in the ConfigMap;
  that config and the probes' command lines run against a real server with
  TLS;
- the Dockerfile: a Debian 12 base, a non-root user, a data volume, a
  health check, packages only from deploy/install-deps.sh, and its command
  line (ENTRYPOINT + CMD, with the example config) serves with a passing
  health check. With docker and a daemon the image is built and its health
  check run; without, that step alone is skipped, saying so.

ctest runs it with CKPT_BUILD_DIR set (tests/CMakeLists.txt)."""

import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PKI_SCRIPT = ROOT / "tests" / "testing" / "make_test_pki.sh"
IMAGE_BINARY = "/usr/local/bin/ckpt-server"


def server_binary():
    build_dir = os.environ.get("CKPT_BUILD_DIR")
    if not build_dir:
        pytest.fail("CKPT_BUILD_DIR is not set (run through ctest)")
    return str(pathlib.Path(build_dir) / "server" / "rpc" / "ckpt-server")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_config(text):
    """The settings a config text gives, through the real binary
    (--print-config), as a dict; fails the test when the binary refuses
    the config."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(text)
        f.flush()
        result = subprocess.run(
            [server_binary(), "--config", f.name, "--print-config"],
            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def port_of(address):
    return int(address.rsplit(":", 1)[1])


class Mapped:
    """Runs deploy files' command lines here: the image's paths under
    /etc/ckpt-server and /var/lib/ckpt-server live in a temp dir, and the
    image's binary is the built one."""

    def __init__(self, root):
        self.root = pathlib.Path(root)

    def path(self, text):
        text = text.replace(IMAGE_BINARY, server_binary())
        for prefix in ("/etc/ckpt-server", "/var/lib/ckpt-server"):
            text = text.replace(prefix, str(self.root) + prefix)
        return text

    def argv(self, argv):
        return [self.path(arg) for arg in argv]

    def write(self, image_path, text, mode=0o644):
        path = pathlib.Path(self.path(image_path))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        return path


def serve(argv):
    """Starts `argv`; returns the process once it listens."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line.startswith("ckpt-server listening on "):
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"{shlex.join(argv)} did not serve: {line!r} {err}")
    return process


def stop(process):
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=40)
    assert process.returncode == 0, err


def run_ok(argv):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (shlex.join(argv), result.stdout,
                                    result.stderr)
    return result


def example_config():
    return (DEPLOY / "ckpt-server.yaml").read_text()


def grace_plus_watchdog(config):
    return config["shutdown_grace_seconds"] + 10


# --- systemd -----------------------------------------------------------

UNIT = DEPLOY / "ckpt-server.service"


def unit_settings(text):
    settings = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def verify_unit(path):
    """`systemd-analyze verify` of the unit at `path`: its complaints (it
    exits 0 on unknown keys and bad values, printing them)."""
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)],
        capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if line.strip()]
    if result.returncode != 0 and not complaints:
        complaints = [f"exit code {result.returncode}"]
    return complaints


@pytest.fixture
def tmp(tmp_path):
    return tmp_path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_systemd_unit_verifies_and_is_hardened(tmp):
    text = UNIT.read_text()
    # verify checks that ExecStart's binary exists: point it at ours.
    unit = tmp / "ckpt-server.service"
    unit.write_text(text.replace(IMAGE_BINARY, server_binary()))
    assert verify_unit(unit) == []
    # The check can fail: a typo and a bad value are reported.
    broken = tmp / "broken.service"
    broken.write_text(unit.read_text().replace(
        "NoNewPrivileges=yes", "NoNewPrivilege=yes\nProtectSystem=sometimes"))
    assert len(verify_unit(broken)) == 2

    settings = unit_settings(text)
    expected = {
        "ProtectSystem": "strict", "NoNewPrivileges": "yes",
        "StateDirectory": "ckpt-server", "ProtectHome": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes",
        "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes", "LockPersonality": "yes",
        "SystemCallArchitectures": "native", "User": "ckpt-server",
        "KillSignal": "SIGTERM",
    }
    for key, value in expected.items():
        assert settings.get(key) == [value], key
    config = load_config(example_config())
    assert int(settings["TimeoutStopSec"][0]) > grace_plus_watchdog(config)
    # The data dir is the StateDirectory, the only writable path.
    assert config["data_dir"] == "/var/lib/ckpt-server"
    assert "ReadWritePaths" not in settings
    exec_start = shlex.split(settings["ExecStart"][0])
    assert exec_start == [IMAGE_BINARY, "--config",
                          "/etc/ckpt-server/ckpt-server.yaml"]


def test_cmake_install_writes_the_binaries_config_and_unit(tmp):
    build_dir = os.environ["CKPT_BUILD_DIR"]
    prefix = tmp / "prefix"
    run_ok(["cmake", "--install", build_dir, "--component", "server",
            "--prefix", str(prefix)])
    binary = prefix / "bin" / "ckpt-server"
    assert os.access(binary, os.X_OK)
    config = prefix / "etc" / "ckpt-server" / "ckpt-server.yaml"
    assert config.read_text() == example_config()
    unit = prefix / "lib" / "systemd" / "system" / "ckpt-server.service"
    # The unit names the install paths of the configure step (/usr/local
    # unless CMAKE_INSTALL_PREFIX says otherwise; --prefix at install time
    # does not change them), and differs from deploy/'s in them only.
    binary_path, _, config_path = shlex.split(
        unit_settings(unit.read_text())["ExecStart"][0])
    assert binary_path.endswith("/bin/ckpt-server")
    assert config_path.endswith("/ckpt-server/ckpt-server.yaml")
    assert unit.read_text() == UNIT.read_text().replace(
        IMAGE_BINARY, binary_path).replace(
            "/etc/ckpt-server/ckpt-server.yaml", config_path)


# --- Kubernetes --------------------------------------------------------

MANIFESTS = DEPLOY / "kubernetes" / "ckpt-server.yaml"


@pytest.fixture(scope="module")
def manifests():
    docs = [d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d]
    by_kind = {}
    for doc in docs:
        for field in ("apiVersion", "kind", "metadata"):
            assert field in doc, (field, doc)
        assert doc["metadata"].get("name"), doc
        assert doc["kind"] not in by_kind, doc["kind"]
        by_kind[doc["kind"]] = doc
    assert set(by_kind) == {"ConfigMap", "Secret", "Service", "StatefulSet"}
    return by_kind


def container_of(manifests):
    [container] = manifests["StatefulSet"]["spec"]["template"]["spec"][
        "containers"]
    return container


def config_path_in(argv):
    return argv[argv.index("--config") + 1]


def mounted(manifests, path):
    """(volume, key) behind `path` in the container: the mount that holds
    it and the file's name in it."""
    container = container_of(manifests)
    for mount in container["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix) or path == mount["mountPath"]:
            return mount["name"], path[len(prefix):]
    pytest.fail(f"{path} is on no volume")


def configmap_config(manifests):
    container = container_of(manifests)
    volume, key = mounted(manifests, config_path_in(container["command"]))
    volumes = {v["name"]: v for v in manifests["StatefulSet"]["spec"][
        "template"]["spec"]["volumes"]}
    assert volumes[volume]["configMap"]["name"] == \
        manifests["ConfigMap"]["metadata"]["name"]
    return manifests["ConfigMap"]["data"][key]


def test_manifests_have_their_kinds_and_required_fields(manifests):
    statefulset = manifests["StatefulSet"]
    service = manifests["Service"]
    spec = statefulset["spec"]
    assert statefulset["apiVersion"] == "apps/v1"
    assert spec["serviceName"] == service["metadata"]["name"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    [claim] = spec["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    container = container_of(manifests)
    assert container["image"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert manifests["Secret"]["type"] == "Opaque"


def test_manifests_match_the_config_they_carry(manifests):
    config = load_config(configmap_config(manifests))
    container = container_of(manifests)
    pod = manifests["StatefulSet"]["spec"]["template"]

    # Ports: the container's grpc port is the config's, and the Service
    # routes to it.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == port_of(config["listen"])
    service_ports = {p["name"]: p for p in manifests["Service"]["spec"][
        "ports"]}
    assert service_ports["grpc"]["targetPort"] in ("grpc", ports["grpc"])
    assert service_ports["metrics"]["targetPort"] in ("metrics",
                                                      ports["metrics"])
    # Metrics: scraped at the metrics port (and that is the config's
    # metrics address once it has one).
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    if "metrics_listen" in config:
        assert port_of(config["metrics_listen"]) == ports["metrics"]

    # Volumes: the data dir is the claim; every file the config names is
    # in the Secret.
    claim = manifests["StatefulSet"]["spec"]["volumeClaimTemplates"][0]
    assert mounted(manifests, config["data_dir"]) == (
        claim["metadata"]["name"], "")
    secret_keys = set(manifests["Secret"]["stringData"])
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    for key in ("auth_tokens", "tls_cert", "tls_key", "probe_tls_ca"):
        volume, name = mounted(manifests, config[key])
        assert volumes[volume]["secret"]["secretName"] == \
            manifests["Secret"]["metadata"]["name"]
        assert name in secret_keys, key

    # Probes: gRPC health through --health-probe with the same config.
    for probe in ("readinessProbe", "livenessProbe"):
        argv = container[probe]["exec"]["command"]
        assert argv[0] == container["command"][0]
        assert "--health-probe" in argv
        assert config_path_in(argv) == config_path_in(container["command"])
    assert pod["spec"]["terminationGracePeriodSeconds"] > \
        grace_plus_watchdog(config)


@pytest.fixture(scope="module")
def pki():
    with tempfile.TemporaryDirectory(prefix="ckpt-pki-") as directory:
        subprocess.run(["bash", str(PKI_SCRIPT), directory], check=True)
        yield pathlib.Path(directory)


def test_the_statefulset_serves_and_its_probes_pass(manifests, pki, tmp):
    """The container's command and probes, with the ConfigMap's config
    and a Secret made of test certificates, on this host."""
    mapped = Mapped(tmp)
    container = container_of(manifests)
    text = configmap_config(manifests)
    config = load_config(text)
    port = free_port()
    text = text.replace(config["listen"], f"127.0.0.1:{port}")
    # The test certificate naming a service (ckpt.test) stands in for the
    # Service's name.
    text = text.replace(f"probe_tls_server_name: "
                        f"{config['probe_tls_server_name']}",
                        "probe_tls_server_name: ckpt.test")
    mapped.write(config_path_in(container["command"]), mapped.path(text))
    secret = {"tls_cert": "named-server.pem", "tls_key": "named-server.key",
              "probe_tls_ca": "ca.pem"}
    for key, name in secret.items():
        mapped.write(config[key], (pki / name).read_text(), 0o600)
    mapped.write(config["auth_tokens"], "# no tokens\n", 0o600)

    process = serve(mapped.argv(container["command"]))
    try:
        for probe in ("readinessProbe", "livenessProbe"):
            run_ok(mapped.argv(container[probe]["exec"]["command"]))
    finally:
        stop(process)
    result = subprocess.run(
        mapped.argv(container["readinessProbe"]["exec"]["command"]),
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "UNAVAILABLE" in result.stdout


# --- Dockerfile --------------------------------------------------------

DOCKERFILE = DEPLOY / "Dockerfile"


def dockerfile_instructions():
    """(instruction, arguments) in order, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def final_stage():
    instructions = dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions)
                    if word == "FROM")
    return instructions[last_from:]


def exec_form(arguments):
    value = json.loads(arguments)
    assert isinstance(value, list), arguments
    return value


def install_deps_packages():
    """The package names of deploy/install-deps.sh: (all, runtime)."""
    text = (DEPLOY / "install-deps.sh").read_text()
    lists = {name: body.split() for name, body in re.findall(
        r"^(\w+)=\(\n?(.*?)\)", text, re.S | re.M)}
    return set(lists["PACKAGES"]) | set(lists["RUNTIME_PACKAGES"]), \
        set(lists["RUNTIME_PACKAGES"])


def test_dockerfile_is_debian_12_non_root_with_volume_and_health_check():
    stage = final_stage()
    base = stage[0][1].split()[0]
    assert re.fullmatch(r"debian:(12|bookworm)(-slim)?", base), base
    for word, arguments in dockerfile_instructions():
        if word == "FROM":
            assert arguments.split()[0].startswith(("debian:12",
                                                    "debian:bookworm"))
    words = dict(stage)  # the last of each
    assert words["USER"] not in ("root", "0")
    config = load_config(example_config())
    volumes = exec_form(words["VOLUME"]) if words["VOLUME"].startswith(
        "[") else words["VOLUME"].split()
    assert config["data_dir"] in volumes
    exposed = [int(port) for port in words["EXPOSE"].split()]
    assert port_of(config["listen"]) in exposed
    if "metrics_listen" in config:
        assert port_of(config["metrics_listen"]) in exposed
    health = words["HEALTHCHECK"]
    assert "--health-probe" in health
    timeout = re.search(r"--timeout=(\d+)s", health)
    assert timeout and int(timeout.group(1)) >= 5  # the probe's own bound


def test_dockerfile_installs_only_packages_of_install_deps():
    everything, runtime = install_deps_packages()
    # The runtime names exist in Debian 12: the built binary runs on them.
    for package in runtime:
        run_ok(["dpkg-query", "-W", package])
    runs = [arguments for word, arguments in dockerfile_instructions()
            if word == "RUN"]
    for command in runs:
        for match in re.finditer(r"apt(?:-get)? install ([^&;|]*)", command):
            for word in match.group(1).split():
                if not word.startswith("-"):
                    assert word in everything, word
    final_runs = [a for w, a in final_stage() if w == "RUN"]
    assert any("install-deps.sh --runtime" in run for run in final_runs)
    assert not any(re.search(r"bash \S*install-deps\.sh(?! --runtime)", run)
                   for run in final_runs), "the full list in the image"


def image_command():
    words = dict(final_stage())
    return exec_form(words["ENTRYPOINT"]) + exec_form(words["CMD"])


def image_health_check():
    health = dict(final_stage())["HEALTHCHECK"]
    return exec_form(health[health.index("CMD") + 3:].strip())


def test_dockerfile_command_line_serves_and_passes_its_health_check(tmp):
    mapped = Mapped(tmp)
    words = dict(final_stage())
    # The image's config is the example one (COPY deploy/ckpt-server.yaml).
    copies = [a.split() for w, a in final_stage() if w == "COPY"]
    config_path = config_path_in(image_command())
    assert ["deploy/ckpt-server.yaml", config_path] in copies
    config = load_config(example_config())
    text = example_config().replace(
        config["listen"], f"0.0.0.0:{free_port()}")
    mapped.write(config_path, mapped.path(text))
    mapped.write(config["auth_tokens"], "# no tokens yet\n", 0o600)
    assert words["ENTRYPOINT"]

    process = serve(mapped.argv(image_command()))
    try:
        run_ok(mapped.argv(image_health_check()))
        assert (pathlib.Path(mapped.path(config["data_dir"])) /
                "CURRENT").exists()
    finally:
        stop(process)


def docker_available():
    if shutil.which("docker") is None:
        return "no docker command"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if info.returncode != 0:
        return "no docker daemon (docker info failed)"
    return None


def test_docker_image_builds_and_becomes_healthy(tmp):
    why_not = docker_available()
    if why_not is not None:
        print(f"SKIPPED the docker image build: {why_not}")
        pytest.skip(f"docker image build skipped: {why_not}")
    tag = f"ckpt-server-test:{os.getpid()}"
    run_ok(["docker", "build", "-f", str(DOCKERFILE), "-t", tag, str(ROOT)])
    tokens = tmp / "tokens"
    tokens.write_text("# no tokens\n")
    tokens.chmod(0o644)
    container = run_ok(["docker", "run", "-d", "-v",
                        f"{tokens}:/etc/ckpt-server/tokens:ro", tag]
                       ).stdout.strip()
    try:
        # The image's own HEALTHCHECK command, run in the container until
        # the server is up (or two minutes pass).
        deadline = time.monotonic() + 120
        while True:
            probe = subprocess.run(
                ["docker", "exec", container, *image_health_check()],
                capture_output=True, text=True, timeout=60)
            if probe.returncode == 0:
                break
            assert time.monotonic() < deadline, probe.stdout + probe.stderr
            time.sleep(1)
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
