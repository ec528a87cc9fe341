"""GitHub adapter: App authentication, and the HostClient over gidgethub's REST and GraphQL calls.

Every call goes through one shared `aiohttp.ClientSession` that the caller owns. A
`GitHubApp` signs short JWTs and keeps one installation token per installation until
shortly before it expires; a `GitHubToken` uses one fixed token instead (a single
repository, `THREADLINE_GITHUB_TOKEN`). Both hand out `GitHubClient`s.

Every failure comes back as an exception of bot.hosts.base, decided in `host_error` and
nowhere else. Nothing in this module retries a write on its own (neither do gidgethub
nor aiohttp, as used here): the outbox decides, guided by `ambiguous`. The one retry
here is after a 401, which GitHub answers before doing anything: fetch a new
installation token once and send the same request again.

Tokens and the private key never appear in messages or logs: messages name the method,
the path and GitHub's own error message, nothing from the request's headers.
"""

from bot.hosts.github.auth import GitHubApp as GitHubApp
from bot.hosts.github.auth import GitHubToken as GitHubToken
from bot.hosts.github.auth import github_from_settings as github_from_settings
from bot.hosts.github.client import GitHubClient as GitHubClient
from bot.hosts.github.shapes import _from_fork as _from_fork
from bot.hosts.github.transport import ACCEPT_JSON as ACCEPT_JSON
from bot.hosts.github.transport import API_VERSION as API_VERSION
from bot.hosts.github.transport import GraphQLErrors as GraphQLErrors
from bot.hosts.github.transport import Transport as Transport
from bot.hosts.github.transport import host_error as host_error
from bot.hosts.github.transport import rate_limit_wait as rate_limit_wait
