# Lantu on Debian bookworm. The apt and pip package lists are the same files the Makefile reads.
FROM debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive LANTU_HOME=/var/lib/lantu LANTU_BIND=0.0.0.0:8080
WORKDIR /opt/lantu
COPY deps/apt.txt deps/apt.txt
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates make \
        $(sed 's/#.*//' deps/apt.txt) \
 && rm -rf /var/lib/apt/lists/*
COPY deps/requirements.lock deps/requirements.lock
RUN python3 -m venv .venv && .venv/bin/pip install --no-cache-dir -r deps/requirements.lock
COPY . .
RUN .venv/bin/pip install --no-cache-dir --no-deps -e . && mkdir -p $LANTU_HOME && chown postgres: $LANTU_HOME
EXPOSE 8080
CMD [".venv/bin/lantu", "serve"]
