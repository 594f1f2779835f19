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
        check="Nothing of the lab is left running, no data is left behind and its ports are free.",
    ),
)

DRILLS: tuple[Step, ...] = (
    Step(
        id="delete-follower",
        title="Delete a follower",
        explanation=(
            "Kill one follower pod. Its Deployment starts a replacement, which connects to the leader and copies "
            "everything again; the other follower and the guestbook keep working all along."
        ),
        commands=("kubectl delete pod <a redis-follower pod>", "kubectl get pods -l role=follower -w"),
        check="A replacement follower runs, links up to the leader and holds the leader's entries again.",
        requires=("followers",),
        optional=True,
        expect=(
            "The pod disappears from the board and a new one appears; a new line starts on the lag chart. The "
            "replacement starts empty, so it needs a FULL resync (the leader's sync_full counter goes up) — a "
            "partial resync is only possible for a follower that kept its data and replication id."
        ),
    ),
    Step(
        id="network-blip",
        title="Cut a follower's link for a moment",
        explanation=(
            "Close the follower's connection to the leader (CLIENT KILL TYPE master), as a network blip would. "
            "The follower reconnects at once and asks for just the bytes it missed."
        ),
        commands=("kubectl exec <a redis-follower pod> -- redis-cli CLIENT KILL TYPE master",),
        check="The follower reconnects and the leader accepts a PARTIAL resynchronisation (sync_partial_ok goes up).",
        requires=("followers",),
        optional=True,
        expect=(
            "The follower's log shows 'Connection with master lost' then 'Master accepted a Partial "
            "Resynchronization'; a P marker appears on its lag chart. No full copy is made: it kept its data and "
            "its replication id, and the leader's backlog still held what it missed."
        ),
    ),
    Step(
        id="pause-replication",
        title="Pause replication on a follower",
        explanation=(
            "Pause one follower's writes for a few seconds (CLIENT PAUSE 5000 WRITE on the follower: the "
            "replication stream is not applied, reads still answer) while the dashboard writes through the "
            "frontend. The follower falls behind, then catches up."
        ),
        commands=(
            "kubectl exec <a redis-follower pod> -- redis-cli CLIENT PAUSE 5000 WRITE",
            "kubectl exec <a redis-follower pod> -- redis-cli INFO replication",
        ),
        check="The paused follower's gap grows above 0 while its link stays up, then drops back to 0 with every entry.",
        requires=("frontend",),
        optional=True,
        expect=(
            "On the lag chart the follower's gap (bytes) and seconds behind climb for about 5 s while its link "
            "stays up, then fall to 0 at once. Reads served by that follower meanwhile are stale: the guestbook "
            "may not show the newest entries until it catches up — eventual consistency."
        ),
    ),
    Step(
        id="delete-leader",
        title="Delete the leader",
        explanation=(
            "Kill the leader pod. The followers lose their link; the Deployment starts a new leader — EMPTY, "
            "because the lab's Redis has no persistence — and the followers resync to it and drop their copies."
        ),
        commands=("kubectl delete pod <the redis-leader pod>", "kubectl logs -f deployment/redis-follower"),
        check="A new leader answers with role master, and every follower links up to it and holds exactly what it "
        "holds (nothing).",
        requires=("followers",),
        optional=True,
        warning=(
            "This deletes the guestbook: the new leader starts empty and the followers copy that. Every entry is lost."
        ),
        expect=(
            "Both followers' links go down (▼ on the chart); a new leader pod appears; the followers do a FULL "
            "resync (F on the chart) and their entry lists empty. The result says how many entries were lost. "
            "This is website issue #20088: without persistence a restarted leader wipes its followers."
        ),
    ),
    Step(
        id="scale-followers",
        title="Scale the followers to 3 and back to 2",
        explanation=(
            "Ask for a third follower: it starts empty and takes a full copy from the leader. Then scale back to "
            "two: one follower is removed, the data stays on the others."
        ),
        commands=(
            "kubectl scale deployment redis-follower --replicas=3",
            "kubectl get pods -l role=follower",
            "kubectl scale deployment redis-follower --replicas=2",
        ),
        check="Three followers are linked and in sync, then two are left, still in sync.",
        requires=("followers",),
        optional=True,
        expect=(
            "A third follower row and lag chart appear, with a full sync (sync_full goes up by one); then one "
            "follower goes away and the chart marks it gone."
        ),
    ),
    Step(
        id="scale-frontend",
        title="Scale the frontend to 5 and back to 2",
        explanation=(
            "The tutorial's optional step: the frontend is stateless, so its replica count can change at any "
            "time; the Service spreads requests over whatever pods are ready."
        ),
        commands=(
            "kubectl scale deployment frontend --replicas=5",
            "kubectl get pods -l app=guestbook -l tier=frontend",
            "kubectl scale deployment frontend --replicas=2",
        ),
        check="Five frontend replicas answer the guestbook API, then two do; no entry is lost.",
        requires=("frontend",),
        optional=True,
        expect="Two more frontend pods appear on the board, then three go away; the guestbook keeps working.",
    ),
)

STEP_IDS: tuple[str, ...] = tuple(step.id for step in STEPS)
DRILL_IDS: tuple[str, ...] = tuple(step.id for step in DRILLS)


def get_step(step_id: str) -> Step | None:
    """The step (main step or drill) with this id, or None."""
    return next((step for step in STEPS + DRILLS if step.id == step_id), None)
