"""The HTTP API on Ray Serve.

Read in the order a request flows: ``app`` (the one builder, ``build_app(AppArgs)``),
``ingress`` (the FastAPI deployment), ``http`` (size limit, API keys, error statuses),
``routes/`` (one router per resource), ``service`` (what the API does), ``blobs`` (durable
raw uploads) and ``deployments`` (extractor, standardizer and embedder replicas).
"""
