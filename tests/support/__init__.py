"""Helpers shared by the tests: configs, assertions, running coroutines, Godot."""
