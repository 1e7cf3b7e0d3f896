"""Sink workers: shaping events for one sink and delivering them over HTTP."""
