"""The local platform: the lab's topology on this machine, with real redis-server processes on loopback.

By concern: `objects` (the manifests as Deployments and Services), `pods` (supervised processes as pods),
`probes` (their readiness probes), `process` (ports, pid table, process groups, reaping), `rundir` (the run
directory: prepared, locked by its owner, watched), `forward` (the expose step's forwarder), `preflight` (what this
machine needs) and `platform` (`LocalPlatform`, which ties them together). Never imports the `kubernetes` client.
"""

from __future__ import annotations

from dashboard.platforms.local.platform import FrontendCommand, LocalPlatform

__all__ = ["FrontendCommand", "LocalPlatform"]
