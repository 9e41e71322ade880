"""``.github/CODEOWNERS`` from the teams: each team's paths → its reviewers (else its members), so that a pull
request editing a team's experiments needs one of them. ``render`` is pure; ``errors`` is what ``validate``
says when the committed file disagrees (one line naming the file)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from expctl.config.schema_teams import TeamIn
from expctl.core.errors import ConfigError

PATH = ".github/CODEOWNERS"
HEADER = "# Written by `expctl teams codeowners` from expctl.yaml's teams: edit the teams, not this file.\n"


def render(teams: Sequence[TeamIn]) -> str:
    """The CODEOWNERS text: one line per path of each team that names owners, in expctl.yaml's order."""
    lines = [HEADER]
    for team in teams:
        owners = team.owners()
        if not owners:
            continue
        lines.append(f"# team {team.name}\n")
        lines.extend(f"/{path.strip('/')}/ {' '.join(owners)}\n" for path in team.paths)
    return "".join(lines)


def errors(files: Mapping[str, bytes], teams: Sequence[TeamIn]) -> list[ConfigError]:
    """One error when teams are declared and the committed CODEOWNERS is not what they say (none without the
    file: a project may leave reviews to other rules)."""
    committed = files.get(PATH)
    if not teams or committed is None:
        return []
    if committed.decode(errors="replace") != render(teams):
        return [ConfigError("does not match expctl.yaml's teams (edited by hand, or the teams changed): run "
                            "`expctl teams codeowners` and commit it", file=PATH)]
    return []
