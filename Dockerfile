# hookgate service image: `hookgate serve` by default; run `hookgate worker` from the same image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY worker ./worker
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 hookgate
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER hookgate
ENV HOOKGATE_HOST=0.0.0.0 HOOKGATE_PORT=8000 HOOKGATE_LOG_FORMAT=json
EXPOSE 8000
# `hookgate serve --check` asks this container's gateway for /readyz; the worker service
# overrides it with `hookgate worker --check` (its heartbeat file, see compose.yaml).
HEALTHCHECK --interval=10s --timeout=3s CMD ["hookgate", "serve", "--check"]
ENTRYPOINT ["hookgate"]
CMD ["serve"]
