#!/usr/bin/env bash
# A throwaway kube-apiserver with the Kubeflow CRDs, by hand (the tests in tests/kube/ do this themselves).
#
# usage: scripts/kube-test-cluster.sh up RUNDIR [PORT] [ETCD_PORT]   build if needed, start, install CRDs
#        scripts/kube-test-cluster.sh down RUNDIR                    stop what `up` started in RUNDIR
# Binaries: $KUBEBUILDER_ASSETS, else ${XDG_CACHE_HOME:-~/.cache}/expctl/kube-v1.20.2 (built when missing).
# CRDs: $EXPCTL_KUBEFLOW_CRDS, else <repo>/../shared/kubeflow-crds. Prints: export KUBECONFIG=...
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
cmd=${1:?usage: kube-test-cluster.sh up|down RUNDIR [PORT] [ETCD_PORT]}
RUN=$(realpath -m "${2:?RUNDIR}")

case "$cmd" in
down)
  for name in apiserver etcd; do
    [ -f "$RUN/$name.pid" ] || continue
    pid=$(cat "$RUN/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done  # graceful: up to 10 s
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$RUN/$name.pid"
  done
  exit 0 ;;
up) ;;
*) echo "unknown command: $cmd (up or down)" >&2; exit 2 ;;
esac

PORT=${3:-16443}
EPORT=${4:-23790}
if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  BIN=$KUBEBUILDER_ASSETS
else
  BIN=${XDG_CACHE_HOME:-$HOME/.cache}/expctl/kube-v1.20.2
  [ -x "$BIN/kube-apiserver" ] || "$HERE/build-kube-apiserver.sh" "$BIN"
fi
CRDS=${EXPCTL_KUBEFLOW_CRDS:-$REPO/../shared/kubeflow-crds}
[ -d "$CRDS" ] || { echo "no CRD directory $CRDS (set EXPCTL_KUBEFLOW_CRDS)" >&2; exit 1; }
PY=$REPO/.venv/bin/python
[ -x "$PY" ] || PY=python3

KUBECONFIG_PATH=$("$HERE/start-kube-apiserver.sh" "$BIN" "$RUN" "$PORT" "$EPORT" | tail -1)
# Create (not client-side apply: the CRDs are too large for the last-applied annotation), wait Established.
"$PY" - "$RUN" "$PORT" "$CRDS" <<'PY'
import json, pathlib, ssl, sys, time, urllib.error, urllib.request
import yaml
run, port, crds = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
ctx = ssl.create_default_context(cafile=str(run / "certs" / "apiserver.crt"))
base = f"https://127.0.0.1:{port}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
def call(url, body=None):
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 method="GET" if body is None else "POST",
                                 headers={"Authorization": "Bearer admintoken", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        return json.load(resp)
names = []
for path in sorted(crds.glob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "CustomResourceDefinition":
            try:
                call(base, doc)
            except urllib.error.HTTPError as exc:
                if exc.code != 409:
                    raise
            names.append(doc["metadata"]["name"])
deadline = time.time() + 60
for name in names:
    while not any(c["type"] == "Established" and c["status"] == "True"
                  for c in call(f"{base}/{name}").get("status", {}).get("conditions", [])):
        if time.time() > deadline:
            sys.exit(f"CRD {name} not Established")
        time.sleep(0.1)
print(f"{len(names)} CRDs established", file=sys.stderr)
PY
echo "export KUBECONFIG=$KUBECONFIG_PATH"
