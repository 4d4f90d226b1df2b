"""`npc-voice bench ...`: benchmarks that print figures and write JSON.

Never imported by the service (tests/test_layering.py checks it).
"""
