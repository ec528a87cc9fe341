"""PlaygroundStore: the playground's data, assembled from its seeding, reads, comments,
changes and what its git export reads."""

from __future__ import annotations

from bot.hosts.local_store.changes import Changes
from bot.hosts.local_store.comments import Comments
from bot.hosts.local_store.git_rows import GitRows
from bot.hosts.local_store.reads import Reads
from bot.hosts.local_store.seeding import Seeding


class PlaygroundStore(Seeding, Reads, Comments, Changes, GitRows):
    """The playground's repository, pull requests and conversations in Threadline's database."""
