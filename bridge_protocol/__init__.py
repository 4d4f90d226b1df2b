"""The npc-voice-bridge wire contract: messages, framing and a reference client.

Importable without the daemon (no model dependencies): pyzmq and msgspec only.
"""

from bridge_protocol.messages import PROTOCOL_VERSION, SAMPLE_FORMAT

__all__ = ["PROTOCOL_VERSION", "SAMPLE_FORMAT"]
