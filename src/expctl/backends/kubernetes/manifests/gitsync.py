"""The git-sync clone script: what an init container runs to check out the code at the pinned commit.

Pure: returns POSIX ``sh`` text. The script reads everything from environment variables, so the manifest
holds no credentials and the same text works for every job kind (v1 init containers run it directly; a
TrainJob runtime's init container runs it too, see ``docs/backends.md``). Credentials come from a Secret
mounted at ``$EXPCTL_GIT_SECRET_DIR``: ``ssh-privatekey`` (+ optional ``known_hosts``) for SSH URLs, or
``username`` + ``password`` (a token) for HTTPS URLs, read by a credential helper at fetch time.

A v1 job's init container runs the script from a file: the ConfigMap ``configmap_name()`` (named by the
script's digest, so a changed script is a new ConfigMap and older jobs keep theirs) holds it under
``SCRIPT_KEY``, created in each namespace by ``apply`` before its jobs; the init container mounts it read-only at
``SCRIPT_DIR`` and runs ``sh SCRIPT_DIR/SCRIPT_KEY`` (``SCRIPT_COMMAND``). A TrainJob runtime holds the script
inline (one object, not one per job). Kubernetes expands ``$(NAME)`` and ``$$`` in a container's command, so
the script uses backquotes for command substitution and never contains ``$$`` (a unit test checks this).
"""

from __future__ import annotations

import hashlib

ENV_REPO = "EXPCTL_GIT_REPO"
ENV_COMMIT = "EXPCTL_GIT_COMMIT"
ENV_DIR = "EXPCTL_CODE_DIR"
ENV_SECRET_DIR = "EXPCTL_GIT_SECRET_DIR"
SCRIPT_KEY = "git-sync.sh"
SCRIPT_DIR = "/etc/expctl/git-sync"
CONFIGMAP_PREFIX = "expctl-git-sync-"

_SCRIPT = r"""set -eu
repo="${EXPCTL_GIT_REPO:?EXPCTL_GIT_REPO is not set}"
commit="${EXPCTL_GIT_COMMIT:?EXPCTL_GIT_COMMIT is not set}"
dir="${EXPCTL_CODE_DIR:?EXPCTL_CODE_DIR is not set}"
secrets="${EXPCTL_GIT_SECRET_DIR:-}"
scratch="${TMPDIR:-/tmp}/expctl-git-sync"
mkdir -p "$scratch" "$dir"
chmod 700 "$scratch"
cd "$dir"
if [ ! -d .git ]; then
  git init -q .
  git remote add origin "$repo"
fi
git config remote.origin.url "$repo"
git config advice.detachedHead false
if [ -n "$secrets" ] && [ -f "$secrets/ssh-privatekey" ]; then
  cp "$secrets/ssh-privatekey" "$scratch/id"
  chmod 600 "$scratch/id"
  hosts="-o StrictHostKeyChecking=accept-new"
  if [ -f "$secrets/known_hosts" ]; then hosts="-o UserKnownHostsFile=$secrets/known_hosts"; fi
  git config core.sshCommand "ssh -i $scratch/id -o IdentitiesOnly=yes $hosts"
fi
if [ -n "$secrets" ] && [ -f "$secrets/username" ] && [ -f "$secrets/password" ]; then
  cat > "$scratch/credentials" <<'HELPER'
#!/bin/sh
[ "${1:-}" = get ] || exit 0
d="$EXPCTL_GIT_SECRET_DIR"
printf 'username=%s\npassword=%s\n' "`cat "$d/username"`" "`cat "$d/password"`"
HELPER
  chmod 700 "$scratch/credentials"
  git config credential.helper "$scratch/credentials"
fi
# Fetch exactly the pinned commit; servers that refuse to serve an unadvertised commit get a full fetch.
if ! git fetch -q --depth 1 origin "$commit" 2>"$scratch/fetch.err"; then
  echo "expctl git-sync: shallow fetch of $commit refused (`head -c 300 "$scratch/fetch.err"`); fetching all"
  git fetch -q origin '+refs/heads/*:refs/remotes/origin/*' '+refs/tags/*:refs/tags/*'
fi
git checkout -q --force --detach "$commit"
git clean -q -ffdx
head=`git rev-parse HEAD`
if [ "$head" != "$commit" ]; then
  echo "expctl git-sync: checked out $head, expected $commit" >&2
  exit 1
fi
echo "expctl git-sync: $repo at $commit in $dir"
"""


def clone_script() -> str:
    """The ``sh`` script that clones ``$EXPCTL_GIT_REPO`` at ``$EXPCTL_GIT_COMMIT`` into ``$EXPCTL_CODE_DIR``.

    It leaves a clean tree whose HEAD is exactly the commit (detached), whatever the branches point at now,
    fails when it cannot, and is safe to rerun in the same directory (an init container restarted).
    """
    return _SCRIPT


def configmap_name() -> str:
    """The ConfigMap holding this script: ``expctl-git-sync-<first 8 hex of its sha256>``."""
    return CONFIGMAP_PREFIX + hashlib.sha256(_SCRIPT.encode()).hexdigest()[:8]


def script_command() -> list[str]:
    """What a v1 init container runs: the script as mounted from ``configmap_name()``."""
    return ["sh", f"{SCRIPT_DIR}/{SCRIPT_KEY}"]
