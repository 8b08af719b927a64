"""The one exception type of lra/: bad task names, missing data, malformed files."""

from __future__ import annotations

from aira.errors import UserError


class LRAError(UserError):
    """A Long Range Arena input a user can fix; the message says what is wrong and what to do."""


RELEASE_URL = "https://storage.googleapis.com/long-range-arena/lra_release.gz"
RELEASE_HELP = (
    f"download the official release archive from {RELEASE_URL} (about 8 GB; listed in the README of "
    "github.com/google-research/long-range-arena), unpack it with `tar xzf lra_release.gz` and pass the "
    "unpacked folder (or any folder inside it down to the task's own folder)"
)
