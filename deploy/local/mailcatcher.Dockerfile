# The development mail catcher (mailcatcher.py) for compose: SMTP on 1025, its web view on 8025.
# Build from this directory: docker build -f deploy/local/mailcatcher.Dockerfile deploy/local
# The base image, replaceable by a registry mirror or a local build (compose passes it).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE}
# aiosmtpd and its dependencies at the versions uv.lock pins (tests/test_deploy_static.py
# keeps them equal).
RUN pip install --no-cache-dir aiosmtpd==1.4.6 atpublic==9.0.0 attrs==26.1.0 \
    && useradd --system --uid 10001 --no-create-home app
COPY mailcatcher.py /app/mailcatcher.py
ENV PYTHONUNBUFFERED=1
USER 10001
EXPOSE 1025 8025
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
    CMD ["python", "-c", "import socket, urllib.request; socket.create_connection(('127.0.0.1', 1025), 2).close(); urllib.request.urlopen('http://127.0.0.1:8025/messages.json', timeout=2)"]
# Messages live in the container only: they go with it, as a development inbox should.
CMD ["python", "/app/mailcatcher.py", "--host", "0.0.0.0", "--port", "1025", "--http-port", "8025", "--dir", "/tmp/mail"]
