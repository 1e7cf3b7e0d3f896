"""The client of the control socket: `eventsinkctl` (ctl), its HTTP/1.1 and JSON
on the socket (wire), the rendering of answers as text (render) and the control
surface's one error type (errors).
Imports neither pyzmq nor pycurl nor sqlite3 nor msgspec
(tests/agent/test_ctl_imports.py).
"""
