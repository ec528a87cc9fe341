# Threadline in a container: the README's install (`pip install .`) on Python's slim
# image, run as an unprivileged user. See README.md, "Running in production".
#
#   docker build -t threadline .
#   docker run -p 3000:3000 -v threadline-data:/data threadline
#
# The same image runs every role: `threadline serve` (the default command),
# `threadline worker` and `threadline db upgrade` (compose.yaml uses all three).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Workspaces: git for mirrors and worktrees, bubblewrap and prlimit (util-linux) for the
# command sandbox (README, "Running in containers").
RUN apt-get update \
    && apt-get install -y --no-install-recommends git bubblewrap util-linux \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md app.yml ./
COPY bot ./bot
COPY handlers ./handlers
RUN pip install .

# An unprivileged user owns /data: the working directory, where the default SQLite file
# (./threadline.db) and the env file the set-up page writes (./threadline.env) live.
RUN useradd --system --uid 10001 --create-home --home-dir /home/threadline threadline \
    && mkdir /data \
    && chown threadline:threadline /data
WORKDIR /data
USER threadline

# A container must listen beyond its own loopback to be reachable at all.
ENV THREADLINE_HOST=0.0.0.0 \
    THREADLINE_PORT=3000
EXPOSE 3000

# /healthz answers while the web server runs. A `threadline worker` container serves no
# HTTP: turn the check off for it (compose.yaml does).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('THREADLINE_PORT', '3000'), timeout=4)"

CMD ["threadline", "serve"]
