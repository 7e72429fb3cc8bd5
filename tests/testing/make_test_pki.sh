#!/bin/bash
# Makes throwaway certificates for TLS tests in DIR (created), with openssl:
#   ca.pem / ca.key                 a test CA
#   server.pem / server.key         server certificate from ca, for
#                                   127.0.0.1, ::1 and localhost
#   client.pem / client.key         client certificate from ca (mTLS)
#   other-ca.pem / other-ca.key     a second, unrelated CA
#   other-server.pem/.key           server certificate from other-ca
#   other-client.pem/.key           client certificate from other-ca
#   named-server.pem/.key           server certificate from ca naming only
#                                   ckpt.test (for a target-name override)
# P-256 keys, valid one day. Usage: make_test_pki.sh DIR
set -euo pipefail
dir=${1:?usage: make_test_pki.sh DIR}
mkdir -p "${dir}"
cd "${dir}"

quiet() { "$@" >/dev/null 2>openssl.err || { cat openssl.err >&2; exit 1; }; }

ca() {  # NAME CN
  quiet openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -nodes -days 1 -subj "/CN=$2" -keyout "$1.key" -out "$1.pem" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
}

leaf() {  # NAME CA CN EXTENSIONS
  quiet openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -nodes -subj "/CN=$3" -keyout "$1.key" -out "$1.csr"
  printf '%s\n' "$4" >"$1.ext"
  quiet openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" \
    -CAcreateserial -days 1 -extfile "$1.ext" -out "$1.pem"
  rm -f "$1.csr" "$1.ext"
}

server_ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"
client_ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"

ca ca "ckpt test CA"
ca other-ca "another test CA"
leaf server ca localhost "${server_ext}"
leaf client ca "test client" "${client_ext}"
leaf other-server other-ca localhost "${server_ext}"
leaf other-client other-ca "other client" "${client_ext}"
leaf named-server ca ckpt.test "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:ckpt.test"
chmod 600 ./*.key
rm -f openssl.err ./*.srl
