"""The operator's API calls load none of the kubernetes client's generated API modules.

``CoreV1Api`` alone is 4.5 MB of generated source and pulls in hundreds of model classes: loading
it and ``AppsV1Api`` and ``CustomObjectsApi`` at the first reconcile cost 25 MiB of RSS from bytecode
(91 MiB and 22 s of CPU where bytecode is not cached). A fresh interpreter makes every call the
reconcile makes, against a local HTTP server answering JSON, and then looks at what was imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, http.server, json, sys, threading
    import kubernetes.client
    from vigil.reconcile import kube, operator  # everything the operator imports

    class Answer(http.server.BaseHTTPRequestHandler):
        def reply(self):
            length = int(self.headers.get("Content-Length") or 0)
            sent = json.loads(self.rfile.read(length) or b"{}") if length else {}
            body = json.dumps({"metadata": {"name": "x", "namespace": "ml", "resourceVersion": "7"},
                               "data": {"k": "dg=="}, "resources": [], **sent}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        do_GET = do_POST = do_PATCH = do_DELETE = reply
        def log_message(self, *args): pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    configuration = kubernetes.client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    client = kube.Kube(kubernetes.client.ApiClient(configuration))
    md = {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelDeployment",
          "metadata": {"name": "resnet", "namespace": "ml", "uid": "u"}}
    child = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "resnet-1", "namespace": "ml"}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "resnet", "namespace": "ml"}}

    async def every_call():
        await client.get_custom("modeldeployments", "ml", "resnet")
        await client.list_custom("incidents", "ml", "vigil.dev/modeldeployment=resnet")
        await client.create_custom("incidents", "ml", {"metadata": {"name": "i"}})
        await client.apply(child)
        await client.apply(service)
        await client.apply_status("modeldeployments", "ModelDeployment", "ml", "resnet", {"conditions": []})
        await client.post_event(md, "Normal", "RevisionCreated", "revision 1")
        await client.observe("ml", "resnet")
        await client.has_gateway_api()
        assert await client.secret_value("ml", "hook", "k") == "v"
        await client.config_map_data("ml", "golden")
        await client.delete_deployment("ml", "resnet-0")
        await asyncio.to_thread(client.pod_deleter.delete_namespaced_pod, "p", "ml")
        await client.delete_custom("incidents", "ml", "i")

    asyncio.run(every_call())
    loaded = sorted(m for m in sys.modules if m.startswith(("kubernetes.client.api.", "kubernetes.client.models.")))
    print(json.dumps(loaded))
    """
)


def test_the_operators_api_calls_load_no_generated_api_module_or_model() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = done.stdout.strip().splitlines()[-1]
    assert "core_v1_api" not in loaded
    assert "apps_v1_api" not in loaded
    assert "custom_objects_api" not in loaded
    assert "v1_pod_spec" not in loaded  # no model classes either


def test_the_operator_loads_neither_numpy_nor_tritonclient_until_a_golden_set_is_compared() -> None:
    """Only the golden-request gate needs them (about 18 MiB of RSS): a fleet without golden sets never
    pays for them, and a validation loads them when it runs."""
    script = textwrap.dedent(
        """
        import json, sys
        import vigil.cli
        from vigil.reconcile import operator, validate
        from vigil.gate import verdict
        before = sorted(m for m in ("numpy", "tritonclient", "gevent") if m in sys.modules)
        verdict.overrides(None)
        print(json.dumps([before, sorted(m for m in ("numpy", "tritonclient") if m in sys.modules)]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = json.loads(done.stdout.strip().splitlines()[-1])
    assert before == []
    assert after == ["numpy"]
