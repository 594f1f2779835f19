"""The lab's steps as data, in the upstream tutorial's order: what each does, teaches, means in kubectl, and proves.

Pure data: the lab runner (`dashboard.lab`) gives each step its action and check; tests keep every step documented.
"""

from __future__ import annotations

from dashboard.models import Step

STEPS: tuple[Step, ...] = (
    Step(
        id="leader",
        title="Start the Redis leader",
        explanation=(
            "A Deployment runs one Redis pod that takes every write; a Service gives it the stable name "
            "redis-leader that the followers and the frontend use to find it."
        ),
        commands=(
            "kubectl apply -f redis-leader-deployment.yaml",
            "kubectl apply -f redis-leader-service.yaml",
            "kubectl get pods",
            "kubectl logs -f deployment/redis-leader",
        ),
        manifests=("redis-leader-deployment.yaml", "redis-leader-service.yaml"),
        check="The leader pod runs and answers PING with role master.",
    ),
    Step(
        id="followers",
        title="Start two Redis followers",
        explanation=(
            "A second Deployment runs two Redis replicas started with --replicaof redis-leader: each copies "
            "everything the leader holds and serves reads; the redis-follower Service spreads reads over them."
        ),
        commands=(
            "kubectl apply -f redis-follower-deployment.yaml",
            "kubectl apply -f redis-follower-service.yaml",
            "kubectl get pods",
        ),
        manifests=("redis-follower-deployment.yaml", "redis-follower-service.yaml"),
        check="Two followers run, each with master_link_status:up to the leader.",
        requires=("leader",),
    ),
    Step(
        id="frontend",
        title="Start the guestbook frontend",
        explanation=(
            "Three stateless web pods serve the guestbook: a write goes to redis-leader, a read comes from "
            "redis-follower. Any replica can answer any request because the state lives in Redis."
        ),
        commands=(
            "kubectl apply -f frontend-deployment.yaml",
            "kubectl apply -f frontend-service.yaml",
            "kubectl get pods -l app=guestbook -l tier=frontend",
        ),
        manifests=("frontend-deployment.yaml", "frontend-service.yaml"),
        check="Every frontend replica runs and answers the guestbook API, reading what the followers hold.",
        requires=("followers",),
    ),
    Step(
        id="expose",
        title="Expose the frontend",
        explanation=(
            "The frontend Service has no address outside the cluster; a port-forward publishes it on this "
            "machine so a browser can open the guestbook (on a cloud cluster, type: LoadBalancer does it instead)."
        ),
        commands=("kubectl port-forward svc/frontend 8080:80", "kubectl get service frontend"),
        manifests=(),
        check="The guestbook answers at the URL shown on the page.",
        requires=("frontend",),
    ),
    Step(
        id="cleanup",
        title="Clean up",
        explanation=(
            "Delete the Deployments and Services by the labels the manifests carry; their ReplicaSets and pods go "
            "with them. The leader had no persistence, so the guestbook's entries go too."
        ),
        commands=(
            "kubectl delete deployment -l app=redis",
            "kubectl delete service -l app=redis",
            "kubectl delete deployment frontend",
            "kubectl delete service frontend",
            "kubectl get pods",
        ),
        manifests=(),
        check="Nothing of the lab is left running, no data is left behind and its ports are free.",
    ),
)

STEP_IDS: tuple[str, ...] = tuple(step.id for step in STEPS)


def get_step(step_id: str) -> Step | None:
    """The step with this id, or None."""
    for step in STEPS:
        if step.id == step_id:
            return step
    return None
