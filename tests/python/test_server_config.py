"""ckpt-server from a --config file, against the real binary: the file's
settings apply, a flag given as well overrides the file, --print-config
shows the result; and --health-probe over plaintext, TLS and mutual TLS,
each with the same config file the server runs with."""

import pathlib
import signal
import subprocess
import tempfile

import pytest

from conftest import _server_binary

PKI_SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "testing" / \
    "make_test_pki.sh"


@pytest.fixture
def workdir():
    with tempfile.TemporaryDirectory(prefix="ckpt-config-") as directory:
        yield pathlib.Path(directory)


def start(args):
    """(process, address) of a ckpt-server started with `args`."""
    process = subprocess.Popen([_server_binary(), *args],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line.startswith("ckpt-server listening on "):
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"ckpt-server did not start: {line!r} {err}")
    return process, line.split()[-1]


def stop(process):
    """SIGTERM by PID; returns the server's log."""
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return err


def probe(args):
    result = subprocess.run([_server_binary(), "--health-probe", *args],
                            capture_output=True, text=True, timeout=30)
    return result.returncode, result.stdout.strip()


def test_a_flag_overrides_the_config_file(workdir):
    config = workdir / "ckpt-server.yaml"
    config.write_text(f"data_dir: {workdir / 'db'}\n"
                      "listen: 127.0.0.1:0\n"
                      "shutdown_grace_seconds: 7\n"
                      "gc_interval_seconds: 0\n")
    printed = subprocess.run(
        [_server_binary(), "--config", str(config),
         "--shutdown-grace-seconds", "3", "--print-config"],
        capture_output=True, text=True, check=True).stdout
    assert "shutdown_grace_seconds: 3\n" in printed
    assert f'data_dir: "{workdir / "db"}"\n' in printed
    assert "gc_interval_seconds: 0\n" in printed
    # The printed config is itself a config file giving the same settings.
    (workdir / "printed.yaml").write_text(printed)
    again = subprocess.run(
        [_server_binary(), "--config", str(workdir / "printed.yaml"),
         "--print-config"], capture_output=True, text=True, check=True).stdout
    assert again == printed

    process, address = start(["--config", str(config),
                              "--shutdown-grace-seconds", "3"])
    assert probe(["--listen", address]) == (0, "")
    log = stop(process)
    assert "event=draining step=draining_calls grace=3s" in log  # the flag, not 7 s
    assert (workdir / "db" / "CURRENT").exists()  # the file's data_dir


def test_a_bad_config_file_stops_the_start_naming_file_line_and_key(workdir):
    config = workdir / "bad.yaml"
    config.write_text(f"data_dir: {workdir / 'db'}\nlisten: 127.0.0.1:0\n"
                      "shutdown_grace_seconds: -1\n")
    result = subprocess.run([_server_binary(), "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"ckpt-server: {config}:3: shutdown_grace_seconds: '-1' is out of "
        "range: must be from 0 to 3600")
    assert not (workdir / "db").exists()


@pytest.fixture(scope="module")
def pki():
    with tempfile.TemporaryDirectory(prefix="ckpt-pki-") as directory:
        subprocess.run(["bash", str(PKI_SCRIPT), directory], check=True)
        yield pathlib.Path(directory)


@pytest.mark.parametrize("mutual", [False, True])
def test_the_health_probe_speaks_the_servers_tls(workdir, pki, mutual):
    config = workdir / "tls.yaml"
    text = (f"data_dir: {workdir / 'db'}\n"
            "listen: 127.0.0.1:0\n"
            f"tls_cert: {pki / 'server.pem'}\n"
            f"tls_key: {pki / 'server.key'}\n"
            f"probe_tls_ca: {pki / 'ca.pem'}\n")
    if mutual:
        text += (f"tls_client_ca: {pki / 'ca.pem'}\n"
                 f"probe_tls_cert: {pki / 'client.pem'}\n"
                 f"probe_tls_key: {pki / 'client.key'}\n")
    config.write_text(text)
    process, address = start(["--config", str(config)])
    try:
        port = address.rsplit(":", 1)[1]
        # The config's own listen address has port 0; the probe is told the
        # real one, and dials loopback for a wildcard host.
        ok = probe(["--config", str(config), "--listen", f"0.0.0.0:{port}"])
        assert ok == (0, "")
        # Plaintext against the TLS port fails with a reason.
        code, reason = probe(["--listen", address])
        assert code == 1
        assert reason.startswith(
            f"ckpt-server --health-probe: {address}: health check failed: ")
        assert "\n" not in reason
        if mutual:
            # Without the probe's client certificate the handshake fails.
            without = workdir / "without-client-cert.yaml"
            without.write_text("".join(
                line + "\n" for line in text.splitlines()
                if not line.startswith(("probe_tls_cert", "probe_tls_key"))))
            code, reason = probe(["--config", str(without), "--listen",
                                  address])
            assert code == 1 and "health check failed" in reason
        # The wrong CA: the server's certificate is not trusted.
        code, _ = probe(["--config", str(config), "--listen", address,
                         "--probe-tls-ca", str(pki / "other-ca.pem")])
        assert code == 1
    finally:
        stop(process)
    code, reason = probe(["--config", str(config), "--listen", address])
    assert code == 1 and "UNAVAILABLE" in reason
