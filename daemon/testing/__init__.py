"""Support for tests and GPU timings: random-weight model writers, a raw ZMTP client.

Never imported by the service (tests/test_layering.py checks it).
"""
