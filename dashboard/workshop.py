"""Workshop mode: rooms of learners on one dashboard, each learner with a lab of their own.

A `Workshop` holds the rooms. The instructor (who holds the dashboard's token) opens a room and gets a short join
code; a learner gives the code and a display name and gets a lab session of their own in the `LabRegistry`
(lab id `<room>-<name>`, so on Kubernetes the namespace `<room>-<name>`), bound to a session secret that the web
layer keeps in an HttpOnly cookie, and a personal rejoin code shown once. Wrong join codes are rate-limited per
client (`JOIN_ATTEMPTS` per minute, then 429); provisioning runs at most `PROVISION_CONCURRENCY` labs at once
and queues the rest; `--max-learners` caps a room.

Progress is written to the `Store` as it happens (every step state change at once), so a restarted dashboard
brings the room back: every learner's lab is opened again and its steps re-run up to the step the learner had
reached (on the local platform the processes died with the dashboard; on Kubernetes the objects are still there
and the idempotent steps find them "unchanged"). Nothing expires.

The instructor's grid (`grid`) is computed from the labs' real states — learners × steps, time on the current
step, last error, drills done — with room aggregates on top; it is published as the `grid` and `present` topics on the
room's own `Hub` whenever any learner's lab changes. Per learner the instructor can reset (delete the lab's
objects and progress), bring to the end of step N (run the steps for them), and remove; per room, broadcast a
message to every learner's page and lock the room against new joins.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import re
import secrets
import time
import unicodedata
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, cast

from dashboard.errors import BadRequest, Conflict, DashboardError, Forbidden, NotFound
from dashboard.live import Hub
from dashboard.models import StepState, StepStatus
from dashboard.session import LabRegistry, LabSession
from dashboard.steps import DRILLS, STEPS
from dashboard.store import LearnerRow, Store, Transition, code_matches, hash_code, hash_secret

log = logging.getLogger("dashboard")

JOIN_ATTEMPTS = 10  # wrong join codes per client per JOIN_WINDOW_SECONDS before 429
JOIN_WINDOW_SECONDS = 60.0
PROVISION_CONCURRENCY = 10
NAME_LIMIT = 40
NOTICE_LIMIT = 280
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a projector
ROOM_TOPICS = ("grid", "present")  # the instructor's grid and the projector's view of it
MAIN_STEP_IDS = tuple(step.id for step in STEPS if step.id != "cleanup")


class TooManyAttempts(DashboardError):
    status = 429


def new_code(length: int = 6) -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def slug(name: str, limit: int = 20) -> str:
    """A DNS-label piece of a display name: 'Ada Lovelace' -> 'ada-lovelace', 'Zoë' -> 'zoe'."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name).strip("-")[:limit].strip("-") or "learner"


def check_name(name: str) -> str:
    name = " ".join(str(name).split())
    if not name or len(name) > NAME_LIMIT or any(unicodedata.category(c).startswith("C") for c in name):
        raise BadRequest(
            f"A display name has 1 to {NAME_LIMIT} visible characters.", "Type your name as the room should see it."
        )
    return name


class JoinLimiter:
    """At most JOIN_ATTEMPTS wrong codes per client per JOIN_WINDOW_SECONDS (brute force of a 6-letter code)."""

    def __init__(self, attempts: int = JOIN_ATTEMPTS, window: float = JOIN_WINDOW_SECONDS) -> None:
        self.attempts, self.window = attempts, window
        self._wrong: dict[str, deque[float]] = {}

    def check(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        wrong = self._wrong.get(client)
        while wrong and now - wrong[0] > self.window:
            wrong.popleft()
        if wrong is not None and len(wrong) >= self.attempts:
            wait = self.window - (now - wrong[0])
            raise TooManyAttempts(
                f"Too many wrong codes from this device: wait {wait:.0f} s.", "Check the code on the projector."
            )

    def wrong(self, client: str, now: float | None = None) -> None:
        self._wrong.setdefault(client, deque()).append(time.monotonic() if now is None else now)
        if len(self._wrong) > 10_000:  # bounded memory under a spray of clients
            self._wrong.pop(next(iter(self._wrong)))


@dataclass
class Learner:
    id: str  # the lab id
    room: str
    name: str
    joined: float
    session_hash: str
    rejoin_hash: str
    states: dict[str, str] = field(default_factory=dict)  # last stored state per step
    errors: list[dict[str, Any]] = field(default_factory=list)
    provisioning: str = "queued"  # queued | ready | failed: <why>


@dataclass
class Room:
    id: str
    title: str
    join_code: str = field(default_factory=new_code)  # a new one at every start: only its hash is stored
    join_hash: str = field(init=False)
    locked: bool = False
    created: float = field(default_factory=time.time)
    notice: str | None = None
    observer_key: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    learners: dict[str, Learner] = field(default_factory=dict)
    hub: Hub = field(default_factory=lambda: Hub(ROOM_TOPICS))

    def __post_init__(self) -> None:
        self.join_hash = hash_code(self.join_code)

    def changed(self) -> None:
        self.hub.publish(*ROOM_TOPICS)


class Workshop:
    """The rooms of this dashboard and what the instructor does with them."""

    def __init__(self, labs: LabRegistry, store: Store, *, max_learners: int = 30) -> None:
        self.labs = labs
        self.store = store
        self.max_learners = max_learners
        self.rooms: dict[str, Room] = {}
        self.limiter = JoinLimiter()
        self._sessions: dict[str, Learner] = {}  # session hash -> learner
        self._shown_once: dict[str, str] = {}  # learner id -> rejoin code not shown yet
        self._provision = asyncio.Semaphore(PROVISION_CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()
        self.provisioning_now = 0
        self.provisioning_peak = 0

    # -- lifecycle ------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bring back every room and learner from the store; rebuild their labs in the background."""
        for row in await asyncio.to_thread(self.store.rooms):
            room = Room(row.id, row.title, locked=row.locked, created=row.created)
            await asyncio.to_thread(self.store.set_join_hash, room.id, room.join_hash)
            self.rooms[room.id] = room
            for learner_row in await asyncio.to_thread(self.store.learners, room.id):
                learner = self._learner(learner_row)
                for t in await asyncio.to_thread(self.store.transitions, learner.id):
                    learner.states = {} if t.step == "*" else learner.states | {t.step: t.state}
                    if t.state == "failed":
                        learner.errors.append({"step": t.step, "message": t.message, "time": t.time})
                self._spawn(self._provision_lab(learner, rebuild=self._reached(learner)))
            log.warning("workshop room %s is back with a new join code %s", room.id, room.join_code)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _learner(self, row: LearnerRow) -> Learner:
        learner = Learner(row.id, row.room, row.name, row.joined, row.session_hash, row.rejoin_hash)
        self.rooms[row.room].learners[learner.id] = learner
        self._sessions[row.session_hash] = learner
        return learner

    # -- rooms ----------------------------------------------------------------------------------------------------

    async def open_room(self, title: str = "Guestbook lab") -> Room:
        room_id = ""
        while not room_id or room_id in self.rooms:
            room_id = f"ws{secrets.choice('abcdefghjkmnpqrstuvwxyz')}{secrets.randbelow(1000):03d}"
        room = Room(room_id, title[:80] or "Guestbook lab")
        await asyncio.to_thread(self.store.add_room, room.id, room.title, room.join_hash)
        self.rooms[room.id] = room
        return room

    def room(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None:
            raise NotFound(f"There is no room called {room_id[:40]!r}.", "Open the room from the instructor page.")
        return room

    def only_room(self) -> Room | None:
        return next(iter(self.rooms.values()), None)

    async def lock(self, room_id: str, locked: bool) -> None:
        room = self.room(room_id)
        room.locked = locked
        await asyncio.to_thread(self.store.set_locked, room.id, locked)
        room.changed()

    def broadcast(self, room_id: str, text: str) -> None:
        room = self.room(room_id)
        text = " ".join(str(text).split())[:NOTICE_LIMIT]
        room.notice = text or None
        for learner in room.learners.values():
            session = self._session(learner)
            if session is not None:
                session.notice = room.notice
                session.hub.publish("notice")
        room.changed()

    # -- learners -------------------------------------------------------------------------------------------------

    def room_of(self, lab_id: str) -> str | None:
        """The room whose learner owns lab `lab_id`, or None (the instructor's own lab, an unknown lab)."""
        return next((room.id for room in self.rooms.values() if lab_id in room.learners), None)

    def learner_for_secret(self, secret: str | None) -> Learner | None:
        return self._sessions.get(hash_secret(secret)) if secret else None

    def take_rejoin_code(self, learner_id: str) -> str | None:
        """The learner's rejoin code, the first time their page asks for it; None after."""
        return self._shown_once.pop(learner_id, None)

    async def join(self, room_id: str, code: str, name: str, client: str, rejoin_code: str = "") -> tuple[Learner, str]:
        """A learner joins (or, with their rejoin code, rejoins) a room. Returns the learner and a new secret."""
        self.limiter.check(client)
        room = self.rooms.get(room_id)
        if room is None or not code_matches(str(code), room.join_hash):
            self.limiter.wrong(client)
            raise Forbidden("That join code is not right.", "Type the code shown on the projector.")
        name = check_name(name)
        secret = secrets.token_urlsafe(24)
        existing = next((lr for lr in room.learners.values() if lr.name.casefold() == name.casefold()), None)
        if existing is not None or rejoin_code:
            if existing is None or not code_matches(str(rejoin_code), existing.rejoin_hash):
                if rejoin_code:
                    self.limiter.wrong(client)
                raise Forbidden(
                    f"{name!r} has already joined this room.",
                    "If that is you, add your personal rejoin code; otherwise pick another name.",
                )
            del self._sessions[existing.session_hash]
            existing.session_hash = hash_secret(secret)
            self._sessions[existing.session_hash] = existing
            await asyncio.to_thread(self.store.set_session_hash, existing.id, existing.session_hash)
            return existing, secret
        if room.locked:
            raise Forbidden("The room is locked: no new learners.", "Ask the instructor to unlock it.")
        if len(room.learners) >= self.max_learners:
            raise Conflict(
                f"The room is full ({self.max_learners} learners).",
                "Ask the instructor; they can raise --max-learners when the machine has room.",
            )
        if await asyncio.to_thread(self.store.name_taken, room.id, name):
            raise Forbidden(f"The name {name!r} was used in this room before.", "Pick another name.")
        lab_id = self._lab_id(room, name)
        rejoin = new_code(8)
        row = LearnerRow(lab_id, room.id, name, hash_secret(secret), hash_code(rejoin), time.time(), None)
        await asyncio.to_thread(self.store.add_learner, row)
        learner = self._learner(row)
        self._shown_once[learner.id] = rejoin
        room.changed()
        self._spawn(self._provision_lab(learner))
        return learner, secret

    def _lab_id(self, room: Room, name: str) -> str:
        base = f"{room.id}-{slug(name, 40 - len(room.id) - 5)}"
        lab_id = base
        while lab_id in room.learners or lab_id in {s.id for s in self.labs}:
            lab_id = f"{base}-{secrets.randbelow(1000):03d}"
        return lab_id

    async def _provision_lab(self, learner: Learner, rebuild: tuple[str, ...] = ()) -> None:
        """Open the learner's lab (at most PROVISION_CONCURRENCY at once); re-run the steps they had reached."""
        async with self._provision:
            self.provisioning_now += 1
            self.provisioning_peak = max(self.provisioning_peak, self.provisioning_now)
            try:
                session = await self.labs.open(learner.id, room=learner.room)
                session.notice = self.rooms[learner.room].notice
                session.lab.add_listener(lambda: self._lab_changed(learner, session))
                learner.provisioning = "ready"
                for step_id in rebuild:
                    result = await session.run_step(step_id)
                    if result["state"] != "done":
                        break
            except DashboardError as exc:
                learner.provisioning = f"failed: {exc.message}"
                log.warning("workshop: lab %s: %s %s", learner.id, exc.message, exc.hint)
            except Exception as exc:  # one sentence on the grid, never a traceback for the room
                learner.provisioning = f"failed: {type(exc).__name__}"
                log.exception("workshop: lab %s could not be opened", learner.id)
            finally:
                self.provisioning_now -= 1
                self.rooms[learner.room].changed()

    def _reached(self, learner: Learner) -> tuple[str, ...]:
        """The main steps to re-run after a restart: up to the last one the learner had done."""
        done = [i for i, step_id in enumerate(MAIN_STEP_IDS) if learner.states.get(step_id) == "done"]
        return MAIN_STEP_IDS[: done[-1] + 1] if done else ()

    def _lab_changed(self, learner: Learner, session: LabSession) -> None:
        """A learner's lab moved: store each step state change at once, publish the grid."""
        changed = False
        for step_id, status in session.lab.status.items():
            if learner.states.get(step_id, "pending") != status.state:
                learner.states[step_id] = status.state
                changed = True
                transition = Transition(
                    learner.id, step_id, status.state, status.message, status.hint, time.time(), status.duration
                )
                if status.state == "failed":
                    learner.errors.append({"step": step_id, "message": status.message, "time": transition.time})
                self._spawn(asyncio.to_thread(self.store.add_transition, transition))
        if changed:
            self.rooms[learner.room].changed()

    @staticmethod
    def _stored(learner: Learner, step_id: str) -> StepStatus:
        """A step of a learner whose lab is not open: only its last stored state is known."""
        return StepStatus(state=cast(StepState, learner.states.get(step_id, "pending")))

    def _session(self, learner: Learner) -> LabSession | None:
        return next((s for s in self.labs if s.id == learner.id), None)

    def learner(self, room_id: str, learner_id: str) -> Learner:
        learner = self.room(room_id).learners.get(learner_id)
        if learner is None:
            raise NotFound(f"There is no learner {learner_id[:60]!r} in this room.", "Pick one from the grid.")
        return learner

    async def reset(self, room_id: str, learner_id: str) -> None:
        """Delete everything of the learner's lab (the cleanup step) and their progress."""
        learner = self.learner(room_id, learner_id)
        session = self._session(learner)
        if session is not None:
            await session.run_step("cleanup")
        learner.states, learner.errors = {}, []
        await asyncio.to_thread(
            self.store.add_transition,
            Transition(learner.id, "*", "reset", "reset by the instructor", "", time.time(), None),
        )
        self.rooms[room_id].changed()

    async def bring_to(self, room_id: str, learner_id: str, step_number: int) -> None:
        """Run the main steps 1..N for the learner (each idempotent; stops at the first that fails)."""
        learner = self.learner(room_id, learner_id)
        if not 1 <= step_number <= len(MAIN_STEP_IDS):
            raise BadRequest(
                f"Step {step_number} is not a step of the lab.", f"Use 1 to {len(MAIN_STEP_IDS)} (cleanup is reset)."
            )
        session = self._session(learner)
        if session is None:
            raise DashboardError("The learner's lab is not ready yet.", "Wait until it is provisioned, then retry.")
        for step_id in MAIN_STEP_IDS[:step_number]:
            if session.lab.status[step_id].state != "done":
                result = await session.run_step(step_id)
                if result["state"] != "done":
                    break

    async def remove(self, room_id: str, learner_id: str) -> None:
        """Delete the learner's lab and take them out of the room (their record stays in the store)."""
        learner = self.learner(room_id, learner_id)
        session = self._session(learner)
        if session is not None:
            with contextlib.suppress(DashboardError):
                await session.run_step("cleanup")
            if session.platform.capabilities.isolates_labs:  # Kubernetes: the learner's namespace, if ours
                with contextlib.suppress(DashboardError):
                    await session.platform.remove_learner()
        await self.labs.close(learner.id)
        await asyncio.to_thread(self.store.remove_learner, learner.id)
        self._sessions.pop(learner.session_hash, None)
        del self.rooms[room_id].learners[learner_id]
        self.rooms[room_id].changed()

    # -- the grid and the records ---------------------------------------------------------------------------------

    def grid(self, room_id: str, now: float | None = None) -> dict[str, Any]:
        """Learners × steps from the labs' real states, and the room's aggregates."""
        room = self.room(room_id)
        now = time.time() if now is None else now
        rows = [self._row(learner, now) for learner in room.learners.values()]
        at = Counter(row["current_step"] for row in rows if row["current_step"])
        failed = Counter(row["last_error"]["reason"] for row in rows if row["failed"] and row["last_error"])
        ordered = sorted(at.items(), key=lambda item: MAIN_STEP_IDS.index(item[0]))
        summary = [f"{n} at step {MAIN_STEP_IDS.index(s) + 1} ({s})" for s, n in ordered]
        done = sum(1 for row in rows if row["finished"])
        if done:
            summary.insert(0, f"{done} done")
        if failed:
            summary.append(
                f"{sum(failed.values())} failed: " + ", ".join(f"{reason} ×{n}" for reason, n in failed.most_common(3))
            )
        return {
            "room": room.id,
            "title": room.title,
            "locked": room.locked,
            "notice": room.notice,
            "learners": rows,
            "steps": [{"id": s.id, "title": s.title} for s in STEPS if s.id != "cleanup"],
            "summary": summary,
            "count": len(rows),
            "provisioning": {
                "now": self.provisioning_now,
                "peak": self.provisioning_peak,
                "limit": PROVISION_CONCURRENCY,
            },
        }

    def _row(self, learner: Learner, now: float) -> dict[str, Any]:
        session = self._session(learner)
        cells: dict[str, dict[str, Any]] = {}
        current: str | None = None  # the first main step not done, while the learner's lab is open
        since = learner.joined
        for step_id in MAIN_STEP_IDS:
            status = session.lab.status[step_id] if session else self._stored(learner, step_id)
            cells[step_id] = {"state": status.state, "message": status.message}
            if status.state == "done" and status.finished_at is not None:
                since = max(since, status.finished_at)
            if session is not None and current is None and status.state != "done":
                current = step_id
        drills_done = sum(1 for d in DRILLS if session.lab.status[d.id].state == "done") if session else 0
        failed = any(c["state"] == "failed" for c in cells.values())
        last_error = None
        if learner.errors:
            error = learner.errors[-1]
            last_error = {**error, "reason": _reason(error["message"])}
        return {
            "id": learner.id,
            "name": learner.name,
            "provisioning": learner.provisioning,
            "cells": cells,
            "current_step": current,
            "seconds_on_step": round(now - since, 1) if current else None,
            "finished": session is not None and current is None,
            "failed": failed,
            "last_error": last_error,
            "drills_done": drills_done,
        }

    async def record(self, room_id: str, learner_id: str) -> dict[str, Any]:
        """A learner's record: steps with times and outputs, drills, errors met."""
        learner = self.learner(room_id, learner_id)
        session = self._session(learner)
        transitions = await asyncio.to_thread(self.store.transitions, learner.id)
        steps = []
        for step in (*STEPS, *DRILLS):
            status = session.lab.status[step.id] if session else self._stored(learner, step.id)
            steps.append(
                {
                    "id": step.id,
                    "title": step.title,
                    "optional": step.optional,
                    "state": status.state,
                    "message": status.message,
                    "started_at": status.started_at,
                    "finished_at": status.finished_at,
                    "output": list(status.output),
                    "result": dict(status.facts),
                }
            )
        return {
            "room": room_id,
            "learner": learner.id,
            "name": learner.name,
            "joined": learner.joined,
            "steps": steps,
            "errors": list(learner.errors),
            "transitions": [t.__dict__ for t in transitions],
        }


def _reason(message: str) -> str:
    """A short reason for the room's aggregate: a kubectl status word if the message has one, else its start."""
    found = re.search(
        r"\b(ImagePullBackOff|ErrImagePull|CrashLoopBackOff|Forbidden|exceeded quota|violates PodSecurity"
        r"|FailedCreate)\b",
        message,
    )
    if found:
        return found.group(1)
    return message.split(":")[0][:60] or "failed"


def record_markdown(record: dict[str, Any]) -> str:
    lines = [f"# {record['name']} — guestbook lab", "", f"Lab `{record['learner']}` in room `{record['room']}`.", ""]
    for step in record["steps"]:
        if step["optional"] and step["state"] == "pending":
            continue
        took = ""
        if step["started_at"] and step["finished_at"]:
            took = f" ({step['finished_at'] - step['started_at']:.1f} s)"
        lines.append(f"## {step['title']} — {step['state']}{took}")
        if step["message"]:
            lines += ["", step["message"]]
        if step["output"]:
            lines += ["", "```", *step["output"], "```"]
        lines.append("")
    if record["errors"]:
        lines += ["## Errors met", ""]
        lines += [
            f"- {time.strftime('%H:%M:%S', time.gmtime(e['time']))} UTC, {e['step']}: {e['message']}"
            for e in record["errors"]
        ]
    return "\n".join(lines) + "\n"


def grid_csv(grid: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    step_ids = [s["id"] for s in grid["steps"]]
    writer.writerow(["learner", "name", *step_ids, "current_step", "seconds_on_step", "drills_done", "last_error"])
    for row in grid["learners"]:
        error = row["last_error"]["message"] if row["last_error"] else ""
        writer.writerow(
            [
                row["id"],
                _csv_safe(row["name"]),
                *(row["cells"][s]["state"] for s in step_ids),
                row["current_step"] or "",
                row["seconds_on_step"] if row["seconds_on_step"] is not None else "",
                row["drills_done"],
                _csv_safe(error),
            ]
        )
    return out.getvalue()


def _csv_safe(value: str) -> str:
    """No formula injection when the CSV is opened in a spreadsheet."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
