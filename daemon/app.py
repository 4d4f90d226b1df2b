"""Running the daemon: load and warm the engines, bind, serve until a signal.

Kept apart from the CLI so tests and embedders can run the same start-up sequence.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time

import zmq.asyncio

from daemon.config import Config
from daemon.engines.loading import load_asr_engines, load_engines
from daemon.metrics import make_telemetry
from daemon.server import BridgeServer, daemon_version

_LOGGER = logging.getLogger(__name__)


async def run_daemon(config: Config, stop: asyncio.Event | None = None) -> None:
    """Load every model, bind the socket, log "ready", and serve until `stop` is set.

    SIGINT and SIGTERM set `stop` (where the platform supports loop signal handlers),
    so Ctrl+C and a game's process manager both shut the daemon down cleanly: turns
    are cancelled with reason "shutdown", engine threads finish, the socket closes.

    Raises:
      ModelNotFoundError, ValueError, RuntimeError: a model failed to load.
      zmq.ZMQError: the port could not be bound (e.g. already in use).
    """
    started = time.perf_counter()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    if sys.platform != "win32":
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    _LOGGER.info("%s starting", daemon_version())
    engines = await load_engines(config)
    asr = await load_asr_engines(config.asr, {npc_id: config.npc_language(npc_id)
                                              for npc_id in config.npcs})
    context = zmq.asyncio.Context()
    telemetry = None
    try:
        telemetry = make_telemetry(config.server.metrics_port)
        server = BridgeServer(config, engines.llm, engines.voices, context, telemetry=telemetry,
                              asr=asr)
        try:
            address = server.bind()
        except zmq.ZMQError as exc:
            raise zmq.ZMQError(
                exc.errno,
                f"cannot bind tcp://{config.server.host}:{config.server.port}: {exc.strerror} "
                "(is another daemon running? choose another port with --port)",
            ) from None
        _LOGGER.info(
            "ready on %s with NPCs %s (start-up %.2f s)",
            address,
            ", ".join(config.npcs),
            time.perf_counter() - started,
        )
        await server.serve(stop)
    finally:
        context.destroy(linger=0)  # every socket, even one a failed start left open
        engines.close()
        if asr is not None:
            asr.close()
        if telemetry is not None:
            telemetry.close()
        for signum in handled:
            loop.remove_signal_handler(signum)
        _LOGGER.info("stopped")
