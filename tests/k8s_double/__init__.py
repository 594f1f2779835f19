"""`KubernetesApiDouble`: an HTTP-level double of the Kubernetes API server, for the faults a real cluster cannot
be made to show on demand (every watch ended with 410 Gone, a watch resumed from its resourceVersion, a rejected
token, the API server gone), for exact request counts, and for the benches. Everything a real cluster can show is
tested on one (`tests/test_k8s_cluster*.py` and the behaviour suite's `kubernetes` parameter).

A real HTTP/1.1 server on 127.0.0.1 in a thread, stateful, shaped like the responses recorded from a v1.36 API
server in `tests/fixtures/k8s/` (Status bodies, list/watch envelopes, apply 201/200, the scale subresource,
SelfSubjectAccessReview, /version). It is seeded from those files where they apply.

What it does (and only that):
- server-side apply (PATCH application/apply-patch+yaml): create -> 201; same config again -> 200 with the same
  resourceVersion; a changed config -> 200 with our labels merged on top;
- GET/LIST with labelSelector and fieldSelector=metadata.name; WATCH as chunked NDJSON from a resourceVersion,
  ended after timeoutSeconds; `expire_watches()` sends the recorded 410 Gone ERROR event and closes every watch,
  and a watch from an older resourceVersion gets that 410 at once;
- DELETE (preconditions.uid); merge-patch of Services and of the scale subresource; EndpointSlices derived from
  the Services and pods; one node; Namespace get/create/delete;
- a tiny controller: a Deployment's pods appear Running and Ready (IPs 127.0.0.x, never a fixture's 10.244.x)
  and are deleted with it (Terminating first, then DELETED after `pod_grace` seconds); a deleted pod is replaced;
- auth: a bearer token (401 otherwise); every SelfSubjectAccessReview is allowed (real RBAC is the cluster's);
- faults: `fail(verb, plural, code, retry_after)` answers 429/5xx with the Status shape and a Retry-After header
  until `heal()`; `delete_namespace(name)` removes a namespace and its objects at once (DELETED events);
- `requests`: every request as (method, verb, path) for counting;
- pods/portforward over WebSocket, as the API server (and the kubelet behind it) serves it to the python client:
  a GET upgrade offering `v5.channel.k8s.io,v4.channel.k8s.io`, answered 101 with `v4.channel.k8s.io`
  (port-forward has no v5); per port i, a data channel 2i and an error channel 2i+1, each opened by the server
  with one frame of [channel, port low byte, port high byte]; client frames are masked [channel, data...];
  a failed dial inside the pod is reported as text on the error channel, then the websocket closes; the
  websocket closes when the target closes. The target of (pod, port) is what a `Kubelet` returned for the pod;
- `kubelet`: optional; then a new pod starts Pending (ContainerCreating) and the kubelet's `run_pod(pod)` starts
  the real process behind it (redis-server, a stub frontend) in a thread; the pod turns Running/Ready with the
  returned {containerPort: (host, port)} as its port-forward targets. `stop_pod(pod)` runs when the pod starts
  terminating, and every port-forward into that pod is cut, as when its containers are killed.

By concern: `fixtures` (the recorded responses in `tests/fixtures/k8s/`, Status bodies, merge-patch), `server`
(the API server: store, controller, REST, watch, auth), `portforward` (the kubelet's side of v4.channel.k8s.io
over a WebSocket), `kubelet` (`LoopbackKubelet`: real processes behind the pods) and `room` (`RoomDouble`: plus what
workshop mode needs, Namespace and isolation-kind apply and cluster-wide pods and events). What it derives from
objects (owner, selectors, pod-template hash) it imports from the dashboard, never copies.
"""

from __future__ import annotations

from tests.k8s_double.fixtures import FIXTURES, TOKEN
from tests.k8s_double.kubelet import Kubelet, LoopbackKubelet
from tests.k8s_double.room import RoomDouble
from tests.k8s_double.server import KubernetesApiDouble

__all__ = ["FIXTURES", "TOKEN", "Kubelet", "KubernetesApiDouble", "LoopbackKubelet", "RoomDouble"]
