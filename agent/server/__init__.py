"""The control server: the control socket's HTTP (control, control_http), the
listeners the supervisor starts (listeners), each command's action
(actions/), the OpenAPI document (openapi) and the followed deliveries'
streams (deliveries_feed). It hands commands to the supervisor's loop; only
the agent imports it, never `eventsinkctl`.
"""
