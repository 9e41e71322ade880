#!/usr/bin/env bash
# Start etcd and a kube-apiserver on 127.0.0.1 for expctl's Kubernetes tests: TLS, token auth, RBAC.
# No controllers, no scheduler, no kubelet (like controller-runtime's envtest): tests play the operator.
#
# usage: scripts/start-kube-apiserver.sh BINDIR RUNDIR PORT ETCD_PORT
#   BINDIR    holds kube-apiserver (scripts/build-kube-apiserver.sh) and optionally etcd (else etcd from PATH)
#   RUNDIR    scratch directory: certs/, etcd/, logs, *.pid, tokens.csv, kubeconfig
#   PORT      apiserver secure port on 127.0.0.1; ETCD_PORT etcd client port (peer port is ETCD_PORT+1)
# Users: RUNDIR/tokens.csv gets the admin token (system:masters) unless it exists; write extra lines
# "token,user,uid,group" to it *before* starting for users that RBAC restricts (EXTRA_TOKENS="t,u,uid,g;..."
# appends them too). Prints the kubeconfig path. Stop with: kill $(cat RUNDIR/apiserver.pid RUNDIR/etcd.pid)
set -euo pipefail
usage="usage: start-kube-apiserver.sh BINDIR RUNDIR PORT ETCD_PORT"
BIN=$(realpath "${1:?$usage}")
RUN=$(realpath -m "${2:?$usage}")
PORT=${3:?$usage}
EPORT=${4:?$usage}
PPORT=$((EPORT + 1))
ETCD=etcd
[ -x "$BIN/etcd" ] && ETCD="$BIN/etcd"
command -v "$ETCD" >/dev/null || { echo "etcd not found (apt-get install etcd-server, or put it in $BIN)" >&2; exit 1; }
[ -x "$BIN/kube-apiserver" ] || { echo "no kube-apiserver in $BIN (run scripts/build-kube-apiserver.sh)" >&2; exit 1; }

mkdir -p "$RUN/etcd" "$RUN/certs"
if [ ! -f "$RUN/certs/sa.key" ]; then
  openssl genrsa -out "$RUN/certs/sa.key" 2048 2>/dev/null
  openssl rsa -in "$RUN/certs/sa.key" -pubout -out "$RUN/certs/sa.pub" 2>/dev/null
fi
[ -f "$RUN/tokens.csv" ] || echo "admintoken,admin,admin-uid,system:masters" > "$RUN/tokens.csv"
if [ -n "${EXTRA_TOKENS:-}" ]; then tr ';' '\n' <<<"$EXTRA_TOKENS" >> "$RUN/tokens.csv"; fi

# etcd: reuse a running one when restarting only the apiserver (the pid file is still alive)
if ! { [ -f "$RUN/etcd.pid" ] && kill -0 "$(cat "$RUN/etcd.pid")" 2>/dev/null; }; then
  "$ETCD" --name expctl-test --data-dir "$RUN/etcd" \
    --listen-client-urls "http://127.0.0.1:$EPORT" --advertise-client-urls "http://127.0.0.1:$EPORT" \
    --listen-peer-urls "http://127.0.0.1:$PPORT" --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
    --initial-cluster "expctl-test=http://127.0.0.1:$PPORT" >> "$RUN/etcd.log" 2>&1 &
  echo $! > "$RUN/etcd.pid"
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$EPORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$EPORT/health" >/dev/null || { echo "etcd did not start:" >&2; tail -20 "$RUN/etcd.log" >&2; exit 1; }
fi

"$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$EPORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$PORT" --insecure-port=0 \
  --cert-dir="$RUN/certs" --token-auth-file="$RUN/tokens.csv" --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$RUN/certs/sa.pub" \
  --service-account-signing-key-file="$RUN/certs/sa.key" --service-cluster-ip-range=10.0.0.0/24 \
  --disable-admission-plugins=ServiceAccount --allow-privileged=true >> "$RUN/apiserver.log" 2>&1 &
echo $! > "$RUN/apiserver.pid"
ready=0
for _ in $(seq 600); do
  if curl -sfk -H "Authorization: Bearer admintoken" "https://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then
    ready=1; break
  fi
  kill -0 "$(cat "$RUN/apiserver.pid")" 2>/dev/null || break
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  echo "kube-apiserver did not become ready:" >&2; tail -20 "$RUN/apiserver.log" >&2; exit 1
fi

cat > "$RUN/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: expctl-test
  cluster: {server: "https://127.0.0.1:$PORT", certificate-authority: "$RUN/certs/apiserver.crt"}
users:
- name: admin
  user: {token: admintoken}
contexts:
- name: expctl-test
  context: {cluster: expctl-test, user: admin, namespace: default}
current-context: expctl-test
KC
echo "$RUN/kubeconfig"
