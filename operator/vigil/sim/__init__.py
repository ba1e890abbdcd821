"""The Triton data-plane simulator behind ``vigil sim``.

Pods in the sandbox run on kwok's fake nodes and execute nothing, yet the operator must see what
it would see in production: Triton's Prometheus series per pod, the KServe v2 health API, traffic
that follows the Service selector and HTTPRoute weights, latency that grows when replicas are
short, and faults per model version. This package plays every Triton pod from one loopback
server.

Layers, pure first:

- ``cluster``: plain snapshots of pods, Services, HTTPRoutes and ModelDeployments, parsed from
  Kubernetes objects, and the ``ClusterSource`` protocol ("where pods come from").
- ``routing``: which pods of which Service receive what share of a deployment's traffic.
- ``arrivals``: Poisson arrivals and replay of recorded arrival times (CSV), with optional
  per-request sizes (tokens) that scale service time.
- ``behaviour``: per (namespace, deployment, version) behaviour layered from defaults, a profile
  file and run-time faults.
- ``queueing``: the per-pod queue, played request by request in event time (an M/M/c queue with
  the defaults: Erlang C waits at any rate), failures, GPU gauges, Triton counters.
- ``exposition``: Triton's metric families from a pod's counters, via prometheus_client.
- ``engine``: the simulator itself: ticks, loads, faults, bookkeeping (requests per revision); no I/O.
- ``models``: where a pod's model lives (its local model repository, Triton's layout), without torch;
  ``inference``: runs it on CPU with torch, quiet faults applied (imported only when a pod has a
  model, so the simulator starts without torch); ``torchmodels``: small seeded torch models and
  their export into a repository, for tests, demos and benchmarks.
- ``triton``, ``control``, ``discovery``, ``server``: the aiohttp edges (per-pod Triton API and
  metrics, the control API, Prometheus HTTP service discovery); ``kube``: the Kubernetes
  informers; ``client`` and ``cli``: the command line, which talks to the control API;
  ``testing``: builders and a threaded server for tests.
"""
