"""The description every control command is (circus style): `Command`, what
both ends of the control socket see of it (docs/control-api.md).

A `Command` says what one operator command is, not how it is carried out: its
name and help, its HTTP method and path (path fields), its optional query
fields, whether it reads a JSON body, how `eventsinkctl` offers it (`cli`: its
options beyond the path fields) and how it renders the answer. The server's
route table (agent/server/control.py), `eventsinkctl`'s subcommands (agent/client/ctl.py)
and the OpenAPI document (agent/server/openapi.py) are all built from these units.

The work (`execute` on the supervisor's main loop, the body's msgspec type,
...) is the command's `Action`, in agent/server/actions/: imported by the agent only,
never by `eventsinkctl`, so a description imports nothing heavier than the
standard library and agent/client/render.py.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing only for type checkers: eventsinkctl starts without it (agent/commands/__init__.py)
if TYPE_CHECKING:
    import re
    from collections.abc import Callable
    from typing import Any

# Plain classes, not dataclasses: `eventsinkctl` imports every description, and dataclasses (with
# inspect) would be a third of its imports. Treat both as frozen: the registry is built once.


class CliArg:
    """One eventsinkctl option of a command, beyond its path fields.

    FLAGS are argparse's (`("--since",)`, or `("ids",)` for a positional); the
    value goes to the request's query string or JSON body under FIELD, through
    CONVERT first when given (on the client: an age such as `2h` becomes Unix
    seconds there). KWARGS are argparse's (help, type, nargs, action, ...)."""

    __slots__ = ("flags", "field", "to", "kwargs", "convert", "omit_default")

    def __init__(
        self,
        flags: tuple[str, ...],
        field: str,
        to: str,
        kwargs: dict[str, Any] | None = None,
        convert: Callable[[Any], Any] | None = None,
        omit_default: bool = True,
    ):
        self.flags = flags
        self.field = field
        self.to = to  # "query" or "body"
        self.kwargs = kwargs or {}
        self.convert = convert
        self.omit_default = omit_default  # leave the field out of the request while it has argparse's default

    def __repr__(self) -> str:
        return f"CliArg({self.flags!r}, {self.field!r}, {self.to!r})"


class Command:
    """One control command as both ends see it: its route, its options, its rendering.

    NAME, HELP, METHOD ("" with PATH "": not on the control socket, e.g. signals) and PATH (a template:
    "{field}" segments are required fields taken from the path); the rest by keyword only: RENDER (the
    answer as text), IN_CTL (eventsinkctl offers it), QUERY (optional fields of the query string), BODY
    (it reads a JSON object; its Action's `body` type says which fields), FIELD_HELP, CLI and MEDIA_TYPE
    (of its success answer; "application/x-ndjson": a stream the server writes as it comes)."""

    __slots__ = (
        "name",
        "help",
        "method",
        "path",
        "render",
        "in_ctl",
        "query",
        "body",
        "field_help",
        "cli",
        "media_type",
    )

    def __init__(
        self,
        name: str,
        help: str,
        method: str,
        path: str,
        *,
        render: Callable[[Any], str],
        in_ctl: bool = True,
        query: tuple[str, ...] = (),
        body: bool = False,
        field_help: tuple[tuple[str, str], ...] = (),
        cli: tuple[CliArg, ...] = (),
        media_type: str = "application/json",
    ):
        self.name = name
        self.help = help
        self.method = method
        self.path = path
        self.render = render
        self.in_ctl = in_ctl
        self.query = query
        self.body = body
        self.field_help = field_help
        self.cli = cli
        self.media_type = media_type

    def __repr__(self) -> str:
        return f"Command({self.name!r}, {self.method} {self.path})"

    @property
    def fields(self) -> tuple[str, ...]:
        """The required fields, in path order."""
        if "{" not in self.path:  # `re` (and enum) only for a path that has fields: not at `status`'s start
            return ()
        import re

        return tuple(re.findall(r"\{(\w+)\}", self.path))

    def path_pattern(self) -> re.Pattern[str]:
        """The path as a regex; each field matches one non-empty path segment."""
        import re  # the server's routes only

        parts = re.split(r"(\{\w+\})", self.path)
        rx = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
        return re.compile(f"^{rx}$")

    def request_path(self, params: dict[str, str], query: dict[str, Any] | None = None) -> str:
        """The path for a request, each field percent-encoded as one segment, then the query string.

        A field from a command line that is not UTF-8 (surrogate escapes) goes as its raw bytes:
        the agent then answers it (e.g. 404 unknown sink) instead of the client raising."""
        # urllib.parse is imported only by the requests that need it (`status` has neither fields nor query).
        path = self.path
        if self.fields:
            import re
            from urllib.parse import quote

            path = re.sub(r"\{(\w+)\}", lambda m: quote(params[m.group(1)], safe="", errors="surrogateescape"), path)
        if query:
            from urllib.parse import urlencode

            path += "?" + urlencode({k: str(v) for k, v in query.items()})
        return path


def render_raw(body: Any) -> str:
    """A document shown as it is (the schema, the OpenAPI document)."""
    return body if isinstance(body, str) else str(body)
