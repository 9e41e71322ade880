#!/usr/bin/env bash
# System packages the integration tests need, installed with apt when missing (CI starts from a bare machine).
set -euo pipefail
need=()
command -v git >/dev/null || need+=(git)
command -v etcd >/dev/null || need+=(etcd-server)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v slurmd >/dev/null || need+=(slurm-wlm)
command -v munged >/dev/null || need+=(munge)  # slurm-wlm and munge: the Slurm cluster of the Slurm tests
[ -x /usr/sbin/slurmdbd ] || need+=(slurmdbd)  # slurmdbd and MariaDB: the Slurm tests with accounting
[ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)  # the tracker on PostgreSQL
[ -x /usr/bin/chromium ] || need+=(chromium)  # Debian's browser, for tests/integration/test_ui_browser.py
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
