"""The GitLab host adapter: `HostClient` over GitLab's REST API v4, through python-gitlab.

python-gitlab is blocking, so every call runs in a worker thread (`asyncio.to_thread`);
one `gitlab.Gitlab` (one `requests.Session`) per client is reused by all of them. The
adapter uses python-gitlab's HTTP layer (`http_get`, `http_post`, `http_list`, ...) with
the paths written out as GitLab's API pages give them, so each method can be checked
against its page; python-gitlab supplies authentication, the base URL (with a
self-managed path prefix), JSON encoding and `Link`-header pagination.

python-gitlab never retries on its own here (`retry_transient_errors=False`,
`obey_rate_limit=False`, `max_retries=0`): retries belong to the outbox, which knows
whether a write may already have happened. Every failure is turned into one of
bot/hosts/base.py's exceptions by `map_error`; GitLab's exceptions carry no response
headers, so a `requests` response hook keeps the last response of each worker thread
for `Retry-After` and `RateLimit-*`.

Vocabulary: the conversation of an issue / merge request (`thread_id` None) is its
notes; a review thread is a discussion (`thread_id` = the discussion id).
Needs GitLab 15.7 or later (the merge request `diffs` endpoint).
"""

from bot.hosts.gitlab.client import GitLabClient as GitLabClient
from bot.hosts.gitlab.diffs import DiffLine as DiffLine
from bot.hosts.gitlab.diffs import line_code as line_code
from bot.hosts.gitlab.diffs import locate as locate
from bot.hosts.gitlab.errors import map_error as map_error
from bot.hosts.gitlab.errors import permission_for as permission_for
from bot.hosts.gitlab.errors import retry_after as retry_after
from bot.hosts.gitlab.shapes import _from_fork as _from_fork
