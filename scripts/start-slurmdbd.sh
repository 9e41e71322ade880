#!/usr/bin/env bash
# The accounting side of a test cluster (scripts/start-slurm.sh --accounting calls it, after munged): a private
# MariaDB (its own datadir and socket under RUNDIR/db, on 127.0.0.1:DB_PORT, no grant tables — nothing but
# this cluster's slurmdbd can reach it) and slurmdbd on 127.0.0.1:DBD_PORT, storing into it.
#
#   usage: scripts/start-slurmdbd.sh RUNDIR DBD_PORT DB_PORT
#
# slurmdbd reads RUNDIR/slurmdbd.conf (it looks beside SLURM_CONF). Needs Debian's slurmdbd and mariadb-server
# (scripts/test-prereqs.sh); MariaDB runs as root here only because it is told to (--user=root).
# scripts/stop-slurm.sh RUNDIR stops both by their pid files.
set -euo pipefail
RUN=$(realpath -m "${1:?usage: start-slurmdbd.sh RUNDIR DBD_PORT DB_PORT}")
DBD_PORT=${2:?DBD_PORT}; DB_PORT=${3:?DB_PORT}
for tool in mariadbd mariadb slurmdbd sacctmgr; do
  command -v "$tool" >/dev/null || command -v "/usr/sbin/$tool" >/dev/null \
    || { echo "start-slurmdbd.sh: $tool not found (apt-get install slurmdbd mariadb-server)" >&2; exit 1; }
done
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
SLURMDBD=$(command -v slurmdbd || echo /usr/sbin/slurmdbd)
mkdir -p "$RUN"/db/data "$RUN"/run "$RUN"/log
# No mariadb-install-db (5 s): with --skip-grant-tables the server starts on an empty datadir, and only the
# system tables are loaded (slurmdbd's queries call stored procedures, which live in mysql.proc: without it
# `sacctmgr show assoc` silently lists too little). Small InnoDB files and no fsync per commit: a throwaway
# database. The server detaches from this script's session.
setsid "$MARIADBD" --no-defaults --user=root --datadir="$RUN/db/data" --socket="$RUN/db/mariadb.sock" \
  --pid-file="$RUN/run/mariadbd.pid" --bind-address=127.0.0.1 --port="$DB_PORT" --skip-grant-tables \
  --skip-name-resolve --skip-log-bin --innodb-log-file-size=4M --innodb-buffer-pool-size=16M \
  --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --log-error="$RUN/log/mariadbd.log" \
  </dev/null >/dev/null 2>&1 &
for _ in $(seq 150); do
  mariadb --no-defaults --socket="$RUN/db/mariadb.sock" -e 'select 1' >/dev/null 2>&1 && break; sleep 0.1
done
mariadb --no-defaults --socket="$RUN/db/mariadb.sock" -e 'select 1' >/dev/null \
  || { echo "start-slurmdbd.sh: MariaDB did not start: $(tail -3 "$RUN/log/mariadbd.log")" >&2; exit 1; }
{ printf 'create database if not exists mysql;\nuse mysql;\nset @auth_root_socket=NULL;\n'
  cat /usr/share/mysql/mysql_system_tables.sql; } | mariadb --no-defaults --socket="$RUN/db/mariadb.sock"
cat > "$RUN/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$RUN/munge/run/munge.socket
DbdAddr=127.0.0.1
DbdHost=$(hostname -s)
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/run/slurmdbd.pid
LogFile=$RUN/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StorageLoc=slurm_acct_db
CONF
chmod 600 "$RUN/slurmdbd.conf"  # slurmdbd refuses a configuration others can read
SLURM_CONF=$RUN/slurm.conf "$SLURMDBD"  # daemonizes once it listens
for _ in $(seq 150); do
  (exec 3<>"/dev/tcp/127.0.0.1/$DBD_PORT") 2>/dev/null && exit 0; sleep 0.1
done
echo "start-slurmdbd.sh: slurmdbd not listening on 127.0.0.1:$DBD_PORT: $(tail -3 "$RUN/log/slurmdbd.log")" >&2
exit 1
