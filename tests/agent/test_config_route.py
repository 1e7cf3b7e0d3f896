"""`GET /v1/config` (the console's Configuration page): the running config with
every secret masked, and what check says of the file."""

from types import SimpleNamespace

from agent.server.actions.config_view import config_view
from common import config as cfg

SECRETIVE = """
[node]
address = "10.44.99.2"
location = "Oslo"

[[sink]]
name = "cdr"
url = "https://alice:urlpass-9f3@collector.example.com/pexip"
locations = ["Oslo"]
username = "alice"
password = "sinkpass-77a"
secret = "whsec_c2VjcmV0LWtleS0xMjM0NTY3OA=="
headers = { "X-Api-Key" = "hdrval-51c" }
proxy = "http://pu:proxypass-3d@127.0.0.1:3128"
"""


def test_every_secret_is_masked_and_check_is_reported(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(SECRETIVE)
    config = cfg.load_or_raise(str(path))
    answer = config_view(SimpleNamespace(config_path=str(path), config=config), {})
    text = repr(answer)
    for secret in ("urlpass-9f3", "sinkpass-77a", "c2VjcmV0LWtleS0xMjM0NTY3OA", "hdrval-51c", "proxypass-3d"):
        assert secret not in text
    sink = answer["running"]["sink"][0]
    assert sink["password"] == sink["secret"] == "***" and sink["headers"] == {"X-Api-Key": "***"}
    assert sink["url"] == "https://collector.example.com/pexip" and sink["username"] == "alice"
    assert answer["check"] == {"valid": True, "problems": [], "warnings": []}


def test_a_broken_file_is_reported_while_the_running_config_is_shown(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(SECRETIVE)
    config = cfg.load_or_raise(str(path))
    path.write_text(SECRETIVE.replace('location = "Oslo"', 'location = "Oslo"\ncolour = 1'))
    answer = config_view(SimpleNamespace(config_path=str(path), config=config), {})
    assert answer["check"]["valid"] is False
    assert any("node.colour" in p for p in answer["check"]["problems"])
    assert answer["running"]["node"]["location"] == "Oslo"
