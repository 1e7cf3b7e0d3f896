"""Alarms: the rules that raise and clear them, and the registry of active ones."""
