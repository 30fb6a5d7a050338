# The hub's image: `jghub serve`, `jghub worker` and `jghub db upgrade` (docker-compose.yml runs
# all three from it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The project from the repository's own files (a regular install: the mappings, code tables and
# samples travel as package data).
COPY pyproject.toml README.md ./
COPY standard ./standard
COPY bus ./bus
COPY store ./store
COPY mappings ./mappings
COPY monitor ./monitor
COPY systems ./systems
COPY reference ./reference
COPY adapters ./adapters
COPY centre ./centre
COPY console ./console
COPY hub ./hub
# psycopg[binary] (the PostgreSQL driver) is a manylinux wheel carrying its own libpq: no
# compiler and no libpq package in this slim image.
RUN pip install . && rm -rf build *.egg-info

# The systems configuration is not package data: it is the deployment's, so it stays a file.
COPY config ./config

RUN useradd --system --uid 10001 --home-dir /home/jghub --create-home jghub \
    && mkdir -p /data \
    && chown jghub:jghub /data

# Defaults of the image; compose (or the operator) sets the rest as JGHUB_* variables.
ENV JGHUB_SYSTEMS_FILE=/app/config/systems.yaml \
    JGHUB_DATA_DIR=/data \
    JGHUB_HOST=0.0.0.0 \
    JGHUB_PORT=8080

USER jghub
VOLUME ["/data"]
EXPOSE 8080 9109

ENTRYPOINT ["jghub"]
CMD ["serve"]
