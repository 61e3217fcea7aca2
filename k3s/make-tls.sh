#!/usr/bin/env bash
# Make the gateway's TLS material for K3s with openssl: a private CA and one
# server certificate for every name edges, inference nodes, peer gateways and
# operators dial (the Services, every StatefulSet replica, extra names you give).
#
#   k3s/make-tls.sh OUT_DIR [NAMESPACE] [EXTRA_NAME...]
#   k3s/make-tls.sh tls edgeswarm gw.example.org
#   kubectl -n edgeswarm create secret generic edgeswarm-tls \
#       --from-file=ca.crt=tls/ca.crt --from-file=tls.crt=tls/tls.crt --from-file=tls.key=tls/tls.key
#
# Keep OUT_DIR/ca.key offline: it signs the next certificate (run again with the
# same OUT_DIR: the CA is reused, so edges keep trusting it). Needs openssl >= 1.1.1.
set -euo pipefail
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
out="$1"
namespace="${2:-edgeswarm}"
shift $(( $# >= 2 ? 2 : 1 ))
days="${EDGESWARM_TLS_DAYS:-825}"
mkdir -p "$out"
umask 077
names=(
    "edgeswarm-gateway"
    "edgeswarm-gateway.$namespace"
    "edgeswarm-gateway.$namespace.svc"
    "edgeswarm-gateway.$namespace.svc.cluster.local"
    "*.edgeswarm-gateway-headless.$namespace.svc.cluster.local"
    "*.edgeswarm-gateway-headless.$namespace.svc"
    "$@"
)
san=""
for name in "${names[@]}"; do san="${san:+$san,}DNS:$name"; done
if [ ! -f "$out/ca.key" ]; then
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
        -days 3650 -subj "/CN=edgeswarm $namespace CA" \
        -keyout "$out/ca.key" -out "$out/ca.crt" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
fi
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -subj "/CN=edgeswarm-gateway.$namespace" -keyout "$out/tls.key" -out "$out/tls.csr" 2>/dev/null
extensions="$(mktemp)"
trap 'rm -f "$extensions" "$out/tls.csr"' EXIT
cat >"$extensions" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san
EXT
openssl x509 -req -in "$out/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -days "$days" -sha256 -extfile "$extensions" -out "$out/tls.crt" 2>/dev/null
chmod 0644 "$out/ca.crt" "$out/tls.crt"
echo "wrote $out/ca.crt, $out/tls.crt, $out/tls.key for: ${names[*]}"
