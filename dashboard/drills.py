"""The failure drills (optional steps): what each one does to the lab, what it checks, and what it saw.

Each drill is a method registered with `@DRILL_ACTIONS("<id>")` next to its code; `Drills(lab, experiments,
sampler)` binds them to one lab, so they run through `Lab.run`: one at a time under the lab's lock, refused with
409 and a hint before their prerequisite step. Each returns an `Outcome` whose facts (resync kind, the leader's
counters before and after, entries lost) stand next to its sentence. Only the `Platform` protocol, Redis and HTTP
are used, so the drills work on every platform.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from functools import partial

from dashboard.errors import PrerequisiteMissing, StepFailed
from dashboard.experiments import Experiments
from dashboard.guestbook.entries import split_entries
from dashboard.lab import ActionTable, Lab, Outcome, frontends_answer
from dashboard.models import RedisEndpoint, Step
from dashboard.probe import ask, split_nodes
from dashboard.redis_nodes import SyncCounters, converged, node_info, node_state, resync_words, sync_counters
from dashboard.replication_chart import human_bytes
from dashboard.sampler import Sampler

PAUSE_SECONDS = 5.0
PAUSE_LOAD_RATE = 20

DRILL_ACTIONS: ActionTable[Drills] = ActionTable()


def counter_facts(before: SyncCounters, after: SyncCounters) -> dict[str, object]:
    """The leader's resync counters before and after a drill, for its structured result."""
    return {
        "sync_full_before": before.full,
        "sync_full_after": after.full,
        "sync_partial_ok_before": before.partial,
        "sync_partial_ok_after": after.partial,
    }


class Drills:
    """The drills' actions, bound to one lab and its experiments (each runs under the lab's lock)."""

    def __init__(self, lab: Lab, experiments: Experiments, sampler: Sampler) -> None:
        self.lab = lab
        self.x = experiments
        self.sampler = sampler
        self.platform = lab.platform
        lab.add_actions(DRILL_ACTIONS.bind(self))

    async def _followers(self, step: Step) -> tuple[RedisEndpoint, list[RedisEndpoint]]:
        leader, followers = await split_nodes(self.platform)
        if not followers:
            raise PrerequisiteMissing("No follower is running.", "Run the followers step first, then try again.")
        reason = await converged(self.platform)
        if reason is not None:
            self.lab.say(step, f"Before the drill: {reason} (it may still be catching up).")
        return leader, followers

    async def _kubectl(self, step: Step, args: str, action: Awaitable[list[str]]) -> None:
        """Show `$ kubectl <args>` in the activity, then each line the platform answers as it does it."""
        self.lab.say(step, f"$ kubectl {args}", "command")
        for line in await action:
            self.lab.say(step, line)

    @DRILL_ACTIONS("delete-follower")
    async def delete_follower(self, step: Step) -> Outcome:
        leader, followers = await self._followers(step)
        victim = followers[0]
        before = await sync_counters(leader)
        started = time.monotonic()
        await self._kubectl(step, f"delete pod {victim.name}", self.platform.delete_pod(victim.name))
        self.x.mark("drill", f"deleted {victim.name}", victim.name)

        async def back() -> str | None:
            names = {e.name for e in (await split_nodes(self.platform))[1]}
            if victim.name in names:
                return f"{victim.name} is still running"
            return await converged(self.platform, len(followers))

        await self.lab.wait(back, "A replacement follower linking up and catching up")
        took = time.monotonic() - started
        leader, now_followers = await split_nodes(self.platform)
        new = sorted({e.name for e in now_followers} - {e.name for e in followers})
        after = await sync_counters(leader)
        kind, full, partial = resync_words(before, after)
        for name in new:
            self.x.mark(f"{kind}_resync" if kind != "none" else "drill", f"replacement: {kind} resync", name)
        entries = len(split_entries((await node_state(leader))[1]))
        message = (
            f"{victim.name} was deleted; {', '.join(new) or 'its replacement'} took its place and resynced with a "
            f"{kind.upper()} sync (leader: sync_full +{full}, sync_partial_ok +{partial}) in {took:.1f} s; "
            f"it holds all {entries} entries. A new pod starts empty, so only a full copy can restore it."
        )
        facts = {"deleted": victim.name, "replacements": new, "resync": kind, "seconds": round(took, 3)}
        return Outcome(message, {**facts, **counter_facts(before, after), "entries": entries})

    @DRILL_ACTIONS("network-blip")
    async def network_blip(self, step: Step) -> Outcome:
        leader, followers = await self._followers(step)
        victim = followers[0]
        before = await sync_counters(leader)
        self.lab.say(step, f"$ redis-cli -h {victim.name} CLIENT KILL TYPE master", "command")
        killed = await ask(victim, "CLIENT", "KILL", "TYPE", "master")
        cut = time.monotonic()
        self.lab.say(step, f"(integer) {killed}")
        self.x.mark("link_down", "link cut (CLIENT KILL TYPE master)", victim.name)
        relinked: list[float] = []

        async def up() -> str | None:
            info = await node_info(victim, "replication")
            if info.get("master_link_status") != "up":
                return f"{victim.name} has master_link_status:{info.get('master_link_status')}"
            if not relinked:
                relinked.append(time.monotonic() - cut)
            return await converged(self.platform, len(followers))

        await self.lab.wait(up, f"{victim.name} reconnecting to the leader")
        after = await sync_counters(leader)
        kind, full, partial = resync_words(before, after)
        self.x.mark(f"{kind}_resync" if kind != "none" else "link_up", f"reconnected: {kind} resync", victim.name)
        if kind == "full":
            why = "the leader could not serve it from its backlog (or the follower lost its replication id)"
        else:
            why = "it kept its data and replication id, and the leader's backlog held the bytes it missed"
        message = (
            f"{victim.name}'s link was cut; it reconnected after {relinked[0] * 1000:.0f} ms with a {kind.upper()} "
            f"resync (leader: sync_partial_ok +{partial}, sync_full +{full}): {why}."
        )
        facts = {"follower": victim.name, "killed": killed, "resync": kind, "relinked_ms": round(relinked[0] * 1000, 1)}
        return Outcome(message, {**facts, **counter_facts(before, after)})

    @DRILL_ACTIONS("pause-replication")
    async def pause_replication(self, step: Step) -> Outcome:
        leader, followers = await self._followers(step)
        victim = followers[0]
        pause_ms = int(PAUSE_SECONDS * 1000)
        load = self.x.load
        own_load = load is None or not load.running
        if own_load:
            self.lab.say(step, f"Writing {PAUSE_LOAD_RATE} entries per second through the frontend meanwhile.")
            load = self.x.start_load(PAUSE_LOAD_RATE, PAUSE_SECONDS + 1)
        assert load is not None
        self.lab.say(step, f"$ redis-cli -h {victim.name} CLIENT PAUSE {pause_ms} WRITE", "command")
        await ask(victim, "CLIENT", "PAUSE", pause_ms, "WRITE")
        resume_at = time.monotonic() + PAUSE_SECONDS
        self.x.mark("drill", f"writes paused for {PAUSE_SECONDS:g} s", victim.name)
        max_gap, link_down = 0, False  # what the paused follower showed
        caught_up: float | None = None  # seconds after the pause ended

        async def drained() -> str | None:
            nonlocal max_gap, link_down, caught_up
            leader_info = await node_info(leader, "replication")
            info = await node_info(victim, "replication")
            gap = int(leader_info.get("master_repl_offset", 0)) - int(info.get("slave_repl_offset", 0))
            max_gap = max(max_gap, gap)
            link_down = link_down or info.get("master_link_status") != "up"
            clock = time.monotonic()
            if clock < resume_at:
                return f"{victim.name} is paused, {gap} bytes behind"
            if gap > 0:
                return f"{victim.name} is {gap} bytes behind"
            if caught_up is None:
                caught_up = clock - resume_at
            if own_load and load.running:
                return "the write load is still running"
            return await converged(self.platform, len(followers))

        await self.lab.wait(drained, f"{victim.name} falling behind and catching up")
        self.x.mark("drill", "pause over, caught up", victim.name)
        if max_gap <= 0:
            raise StepFailed(
                f"{victim.name}'s gap never grew while it was paused.",
                "Check that writes reach the leader (the frontend pods are ready), then run the drill again.",
            )
        recent = self.sampler.history.samples(victim.name)[-40:]  # none yet if the sampler has not seen it
        behind = max((s.seconds_behind or 0.0 for s in recent), default=0.0)
        caught = caught_up or 0.0
        link = "went down" if link_down else "stayed up"
        wrote = f"{load.ok} entries were written" if own_load else "the running write load went on"
        message = (
            f"{victim.name}'s writes were paused for {PAUSE_SECONDS:g} s while {wrote} through the frontend: its "
            f"gap grew to {human_bytes(max_gap)} ({max_gap} B, about {behind:.1f} s behind) and its link {link}; "
            f"it caught up {caught * 1000:.0f} ms after the pause ended and holds every entry."
        )
        facts = {
            "follower": victim.name,
            "max_gap_bytes": max_gap,
            "seconds_behind": round(behind, 3),
            "link_down": link_down,
            "caught_up_ms": round(caught * 1000, 1),
            "entries_written": load.ok if own_load else None,
        }
        return Outcome(message, facts)

    @DRILL_ACTIONS("delete-leader")
    async def delete_leader(self, step: Step) -> Outcome:
        leader, followers = await self._followers(step)
        before_info, raw = await node_state(leader)
        lost = len(split_entries(raw))
        started = time.time()
        self.lab.say(step, f"The leader holds {lost} entries and has no persistence.")
        await self._kubectl(step, f"delete pod {leader.name}", self.platform.delete_pod(leader.name))
        self.x.mark("drill", f"deleted the leader {leader.name}", None)

        async def resynced() -> str | None:
            new_leader, _ = await split_nodes(self.platform)
            if new_leader.name == leader.name:
                return f"{leader.name} is still running"
            info = await node_info(new_leader, "replication")
            if info.get("master_replid") == before_info.get("master_replid"):
                return "the leader has not restarted yet"
            return await converged(self.platform, len(followers))

        await self.lab.wait(resynced, "A new leader starting and the followers resyncing to it")
        new_leader, now_followers = await split_nodes(self.platform)
        _, new_raw = await node_state(new_leader)
        left = len(split_entries(new_raw))
        counters = await sync_counters(new_leader)
        downs = [
            e
            for e in self.sampler.history.events
            if e.time >= started and e.kind == "link_down" and e.node in {f.name for f in followers}
        ]
        for f in now_followers:
            self.x.mark("full_resync", "resynced to the new, empty leader", f.name)
        seen_down = f"{len(downs)} follower link(s) seen going down" if downs else "the links dropped between samples"
        if left == 0 and lost > 0:
            verdict = f"DATA LOSS: {lost} entries are gone from every node."
        elif lost == 0:
            verdict = "The guestbook was empty, so nothing was lost this time."
        else:
            verdict = f"The new leader holds {left} entries (of {lost}): it kept data, so it has persistence."
        message = (
            f"{verdict} The leader {leader.name} was deleted; {new_leader.name} started empty, {seen_down}, and "
            f"{len(now_followers)} followers made {counters.full} full resync(s) to it and now hold {left} entries."
        )
        facts = {
            "deleted": leader.name,
            "new_leader": new_leader.name,
            "entries_before": lost,
            "entries_after": left,
            "entries_lost": max(0, lost - left),
            "data_loss": left == 0 and lost > 0,
            "resync": "full" if counters.full else "none",
            "sync_full_after": counters.full,
            "links_seen_down": len(downs),
        }
        return Outcome(message, facts)

    @DRILL_ACTIONS("scale-followers")
    async def scale_followers(self, step: Step) -> Outcome:
        leader, followers = await self._followers(step)
        back_to = self.lab.desired["redis-follower"]
        before = await sync_counters(leader)
        shown = "scale deployment redis-follower --replicas=3"
        await self._kubectl(step, shown, self.platform.scale("redis-follower", 3))
        await self.lab.wait(partial(converged, self.platform, 3), "Three followers linking up and catching up")
        _, full, _ = resync_words(before, await sync_counters(leader))
        _, grown = await split_nodes(self.platform)
        new = sorted({e.name for e in grown} - {e.name for e in followers})
        for name in new:
            self.x.mark("full_resync" if full else "drill", "joined", name)
        self.lab.say(step, f"3 followers in sync; {', '.join(new) or 'the new one'} joined with {full} full sync(s).")
        shown = f"scale deployment redis-follower --replicas={back_to}"
        await self._kubectl(step, shown, self.platform.scale("redis-follower", back_to))
        await self.lab.wait(partial(converged, self.platform, back_to), f"{back_to} followers left, in sync")
        _, shrunk = await split_nodes(self.platform)
        gone = sorted({e.name for e in grown} - {e.name for e in shrunk})
        message = (
            f"Scaled to 3: {', '.join(new) or 'a new follower'} joined with a full sync (sync_full +{full}). "
            f"Scaled back to {back_to}: {', '.join(gone) or 'one follower'} was removed; the others stay in sync."
        )
        return Outcome(message, {"joined": new, "removed": gone, "sync_full_delta": full, "replicas": back_to})

    @DRILL_ACTIONS("scale-frontend")
    async def scale_frontend(self, step: Step) -> Outcome:
        leader, _ = await split_nodes(self.platform)
        before = len(split_entries((await node_state(leader))[1]))
        for replicas in (5, 2):
            shown = f"scale deployment frontend --replicas={replicas}"
            await self._kubectl(step, shown, self.platform.scale("frontend", replicas))
            answering = partial(frontends_answer, self.platform, replicas)
            await self.lab.wait(answering, f"{replicas} frontend replicas answering")
            self.lab.say(step, f"{replicas} frontend replicas answer the guestbook API.", "ok")
        after = len(split_entries((await node_state((await split_nodes(self.platform))[0]))[1]))
        if after < before:
            raise StepFailed(f"The guestbook lost entries ({before} → {after}).", "Look at the activity log.")
        message = f"5 frontend replicas answered, then 2 did; the guestbook still holds its {after} entries."
        return Outcome(message, {"replicas": [5, 2], "entries_before": before, "entries_after": after})
