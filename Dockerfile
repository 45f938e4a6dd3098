# A kron image: `kron` as the entrypoint, run by an unprivileged user.
#
#   docker build -t registry.example.org/kron:0.1.0 .
#   kron export kubernetes --image registry.example.org/kron:0.1.0 -o deploy/
#
# The pods of `kron export kubernetes` run this image: kron mode runs `kron run JOB --here`,
# native mode the job's own command. Build an image FROM this one that adds the tools your
# jobs call (pg_dump, curl, an agent CLI).
FROM python:3.11-slim

# tini as PID 1: it hands SIGTERM to kron and reaps the orphans a job's processes leave behind.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY kron ./kron
RUN pip install --no-cache-dir . \
    && rm -rf /src

# A numeric user, so that a pod's `runAsNonRoot: true` can check it without /etc/passwd.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/kron kron
USER 10001:10001
WORKDIR /home/kron
ENV PYTHONUNBUFFERED=1

ENTRYPOINT ["/usr/bin/tini", "--", "kron"]
CMD ["--help"]
