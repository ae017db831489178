# The kefta image: the worker, the simulator and the dashboard import.
#   docker build -t kefta:local .      (docker-compose.yml builds it too)
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
# The wheel carries the warehouse SQL (and may carry the Kibana saved objects);
# /app/dashboards/ is also what `kefta dashboards import --file` reads in compose.
COPY sql ./sql
COPY dashboards ./dashboards
RUN pip install .

RUN useradd --system --uid 10001 --home-dir /var/lib/kefta --create-home kefta \
    && mkdir -p /var/lib/kefta/state \
    && chown -R kefta /var/lib/kefta
USER kefta
WORKDIR /var/lib/kefta

EXPOSE 6066
CMD ["kefta", "worker"]
