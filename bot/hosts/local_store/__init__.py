"""The playground's data: one repository with a pull request, kept in Threadline's database.

`PlaygroundStore` is the SQL behind both sides of the `local` host: the playground pages
write what people say through it, and `LocalHost` (bot/hosts/local.py) writes what the
bot says. Every method is blocking; async callers use `asyncio.to_thread`.

`prepare` seeds the playground on first use (repository `playground/demo`, pull request
#1 with a small diff, the users `maintainer` (write) and `outsider` (read) and the bot)
and settles the webhook secret: the configured one, else one generated once and kept in
`playground_meta`.
"""

from bot.hosts.local_store.rows import HEAD_BRANCH as HEAD_BRANCH
from bot.hosts.local_store.rows import SECRET_META_KEY as SECRET_META_KEY
from bot.hosts.local_store.rows import CommentInfo as CommentInfo
from bot.hosts.local_store.rows import CommitStateInfo as CommitStateInfo
from bot.hosts.local_store.rows import Conversation as Conversation
from bot.hosts.local_store.rows import PlaygroundError as PlaygroundError
from bot.hosts.local_store.rows import PullInfoRow as PullInfoRow
from bot.hosts.local_store.rows import ReviewInfo as ReviewInfo
from bot.hosts.local_store.rows import ThreadInfo as ThreadInfo
from bot.hosts.local_store.rows import UserInfo as UserInfo
from bot.hosts.local_store.rows import comment_url as comment_url
from bot.hosts.local_store.rows import pull_url as pull_url
from bot.hosts.local_store.store import PlaygroundStore as PlaygroundStore
