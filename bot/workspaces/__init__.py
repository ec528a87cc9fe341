"""Workspaces: a bare mirror per repository, a git worktree per session, and the sandbox
that commands run in.

`git` runs the `git` program (mirrors, worktrees, credentials in its environment only);
`store` keeps mirrors and worktrees under one directory with quotas; `sandbox` builds
bubblewrap's argv and runs a command under it; `proc` runs any subprocess with a
timeout and an output cap; `paths` keeps every tool's path inside the worktree;
`tools` are the workspace tools an agent calls.
"""
