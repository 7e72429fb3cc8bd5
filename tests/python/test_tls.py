"""TLS, mutual TLS and the bearer token from Python: ckpt.Client and
CheckpointManager against a real ckpt-server started with --tls-*, with
throwaway certificates made by tests/testing/make_test_pki.sh."""

import pathlib
import subprocess
import tempfile

import numpy as np
import pytest
import torch

import ckpt
from conftest import ServerProcess

PKI_SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "testing" / \
    "make_test_pki.sh"
SECURITY_ENV = ("CKPT_TLS_CA", "CKPT_TLS_CERT", "CKPT_TLS_KEY",
                "CKPT_TLS_SERVER_NAME", "CKPT_TOKEN")


@pytest.fixture(scope="module")
def pki():
    with tempfile.TemporaryDirectory(prefix="ckpt-pki-") as directory:
        subprocess.run(["bash", str(PKI_SCRIPT), directory], check=True)
        yield pathlib.Path(directory)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No CKPT_TLS_* or CKPT_TOKEN from the caller's environment."""
    for name in SECURITY_ENV:
        monkeypatch.delenv(name, raising=False)


def _serve(pki, mutual):
    """Yields the address of a TLS (mutual when `mutual`) ckpt-server."""
    args = ["--tls-cert", str(pki / "server.pem"),
            "--tls-key", str(pki / "server.key")]
    if mutual:
        args += ["--tls-client-ca", str(pki / "ca.pem")]
    with tempfile.TemporaryDirectory(prefix="ckpt-pytest-") as data_dir:
        process = ServerProcess(data_dir, args)
        try:
            yield process.start()
        finally:
            process.stop()


@pytest.fixture
def tls_server(pki):
    yield from _serve(pki, mutual=False)


@pytest.fixture
def mtls_server(pki):
    yield from _serve(pki, mutual=True)


def round_trip(client, job, step):
    array = np.arange(300_000, dtype=np.float32).reshape(300, 1000)
    entry = ("w", "float32", [300, 1000], [0, 0], [300, 1000], array)
    assert client.save_shard(job, step, [entry])["checkpoint_committed"]
    [(name, _, _, _, _, out)] = client.restore_shard(job, step)
    assert name == "w"
    np.testing.assert_array_equal(out, array)


def test_client_over_tls(tls_server, pki):
    client = ckpt.Client(tls_server, connect_timeout=10.0,
                         tls_ca=str(pki / "ca.pem"))
    round_trip(client, "py/tls", 1)
    # Without shared memory, every byte crosses the TLS connection.
    streaming = ckpt.Client(tls_server, connect_timeout=10.0,
                            shared_memory_restore=False,
                            tls_ca=pki / "ca.pem")  # os.PathLike works too
    round_trip(streaming, "py/tls", 2)
    # A bytes path too.
    ckpt.Client(tls_server, connect_timeout=10.0,
                tls_ca=str(pki / "ca.pem").encode())


def test_manager_over_mutual_tls(mtls_server, pki):
    state = {"model": torch.nn.Linear(64, 32).state_dict(), "step": 7}
    with ckpt.CheckpointManager(
            mtls_server, "py/mtls", tls_ca=str(pki / "ca.pem"),
            tls_cert=str(pki / "client.pem"),
            tls_key=str(pki / "client.key")) as manager:
        assert manager.save(state, 7)
        manager.wait()
    with ckpt.CheckpointManager(
            mtls_server, "py/mtls", tls_ca=str(pki / "ca.pem"),
            tls_cert=str(pki / "client.pem"),
            tls_key=str(pki / "client.key")) as manager:
        restored = manager.restore()
    assert restored["step"] == 7
    for key, tensor in state["model"].items():
        assert torch.equal(restored["model"][key], tensor)


def test_environment_supplies_the_defaults(mtls_server, pki, monkeypatch):
    monkeypatch.setenv("CKPT_TLS_CA", str(pki / "ca.pem"))
    monkeypatch.setenv("CKPT_TLS_CERT", str(pki / "client.pem"))
    monkeypatch.setenv("CKPT_TLS_KEY", str(pki / "client.key"))
    round_trip(ckpt.Client(mtls_server, connect_timeout=10.0), "py/env", 1)
    with ckpt.CheckpointManager(mtls_server, "py/env") as manager:
        assert manager.latest_step == 1
    # An argument wins over its variable; '' turns the variable off.
    with pytest.raises(ckpt.Error) as refused:
        ckpt.Client(mtls_server, connect_timeout=2.0, tls_cert="",
                    tls_key="")
    assert refused.value.code == "UNAVAILABLE"
    with pytest.raises(ckpt.Error):
        ckpt.Client(mtls_server, connect_timeout=2.0,
                    tls_ca=str(pki / "other-ca.pem"))


def test_plaintext_client_is_refused(tls_server):
    with pytest.raises(ckpt.Error) as refused:
        ckpt.Client(tls_server, connect_timeout=2.0)
    assert refused.value.code == "UNAVAILABLE"


def test_server_certificate_from_another_ca_is_refused(tls_server, pki):
    with pytest.raises(ckpt.Error) as refused:
        ckpt.Client(tls_server, connect_timeout=2.0,
                    tls_ca=str(pki / "other-ca.pem"))
    assert refused.value.code == "UNAVAILABLE"


def test_mutual_tls_refuses_missing_and_foreign_client_certificates(
        mtls_server, pki):
    with pytest.raises(ckpt.Error) as no_cert:
        ckpt.Client(mtls_server, connect_timeout=2.0,
                    tls_ca=str(pki / "ca.pem"))
    assert no_cert.value.code == "UNAVAILABLE"
    with pytest.raises(ckpt.Error) as foreign:
        ckpt.Client(mtls_server, connect_timeout=2.0,
                    tls_ca=str(pki / "ca.pem"),
                    tls_cert=str(pki / "other-client.pem"),
                    tls_key=str(pki / "other-client.key"))
    assert foreign.value.code == "UNAVAILABLE"


def test_token_in_clear_to_another_host_is_refused(monkeypatch):
    secret = "py-s3cret-token"
    with pytest.raises(ValueError) as refused:
        ckpt.Client("192.0.2.1:7070", token=secret)
    assert "refusing to send the token in clear" in str(refused.value)
    assert secret not in str(refused.value)
    # The same token from the environment.
    monkeypatch.setenv("CKPT_TOKEN", secret)
    with pytest.raises(ValueError) as from_env:
        ckpt.CheckpointManager("192.0.2.1:7070", "py/job")
    assert secret not in str(from_env.value)
    # Loopback in clear is allowed (nothing leaves the host).
    ckpt.Client("127.0.0.1:1", token=secret)


def test_bad_arguments_name_themselves(pki, tls_server):
    with pytest.raises(ValueError, match=r"tls_ca \(or \$CKPT_TLS_CA\): "
                                         r"no PEM certificate"):
        ckpt.Client(tls_server, tls_ca=str(pki / "ca.key"))
    with pytest.raises(ValueError, match="cannot read"):
        ckpt.Client(tls_server, tls_ca=str(pki / "missing.pem"))
    with pytest.raises(ValueError, match="needs tls_key"):
        ckpt.Client(tls_server, tls_ca=str(pki / "ca.pem"),
                    tls_cert=str(pki / "client.pem"))
    with pytest.raises(ValueError, match="does not belong"):
        ckpt.Client(tls_server, tls_ca=str(pki / "ca.pem"),
                    tls_cert=str(pki / "client.pem"),
                    tls_key=str(pki / "server.key"))
    client = ckpt.Client(tls_server, tls_ca=str(pki / "ca.pem"))
    with pytest.raises(ValueError, match="set on the ckpt.Client"):
        ckpt.CheckpointManager(client, "py/job", tls_ca=str(pki / "ca.pem"))
