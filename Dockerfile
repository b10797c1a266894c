# One image for every q2c process (worker, webhook/console, sandboxes); the command picks the role.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY . .
RUN pip install --no-cache-dir -e .
ENV PYTHONUNBUFFERED=1 Q2C_STATE_DIR=/data
VOLUME /data
CMD ["python", "-m", "q2c.worker"]
