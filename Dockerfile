# A small image of the hub: slim Python, non-root user, the data directory as a volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IDENTITY_HUB_DATA_DIR=/data \
    IDENTITY_HUB_HOST=0.0.0.0 \
    IDENTITY_HUB_PORT=8080

WORKDIR /app
COPY pyproject.toml README.md ./
COPY identity_hub ./identity_hub
COPY migrations ./migrations
COPY schemas ./schemas
# Installed the way the README does (pip from the source tree), without the test extras.
RUN pip install --no-cache-dir -e . \
    && useradd --system --uid 10001 --home-dir /data hub \
    && mkdir -p /data && chown hub /data

USER hub
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"
ENTRYPOINT ["identity-hub"]
CMD ["serve"]
