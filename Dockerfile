# One image for both commands: taskframe-server (default) and taskframe-worker.
# Not exercised by CI (no Docker engine on our machines); see README "Scaling out"
# and "Security". The server listens on all interfaces inside the container, so
# it needs tokens: mount a token file and set TASKFRAME_TOKENS_FILE (or set
# TASKFRAME_TOKENS); without any it refuses to start. deploy/make-tokens makes them.
FROM python:3.12-slim
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY core core
COPY plugins plugins
COPY server server
COPY worker worker
COPY standalone standalone
COPY client client
COPY testing testing
COPY deploy deploy
RUN pip install --no-cache-dir ".[postgres]"
RUN useradd --create-home taskframe
USER taskframe
WORKDIR /home/taskframe
ENV TASKFRAME_HOST=0.0.0.0 TASKFRAME_PORT=8000
EXPOSE 8000
CMD ["taskframe-server"]
