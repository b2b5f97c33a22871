"""`edgekit serve`: verified artifacts behind TF Serving REST and KServe v2, with versions and metrics.

Nothing here imports a runtime: inference runs in worker processes on the benchmark
backends (edgekit.benchmarks), one artifact per worker. The model store and
`publish` are in `edgekit.serving.store`, the server in `edgekit.serving.server`.
"""
