"""Supervision: the supervisor process and what it keeps of its children.

The supervisor's loop (supervisor), the children as a group and one by one
(fleet, child, console_child), their processes and exits (processes), their
states (states) and deadlines (deadline), the reports they send over the
supervisor link (childlink, worker_reports) and the figures folded from them
(counters), a reload's plan (reload), the runtime files and locks (runtime),
and the metrics built from all of it (metrics).
"""
