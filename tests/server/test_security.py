"""Authentication, authorization, XSRF, and the static handler check."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from jupyter_hub_ctl.cluster import list_hubs

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_every_handler_method_is_authenticated_and_authorized():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "check_handler_auth.py")], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout
    assert "0 problem(s)" in out.stdout


def test_the_check_catches_a_missing_decorator(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import check_handler_auth
    finally:
        sys.path.pop(0)
    (tmp_path / "h.py").write_text(
        "class H:\n    @web.authenticated\n    async def get(self):\n        pass\n"
        "    @web.authenticated\n    @authorized\n    async def post(self):\n        pass\n")
    problems = check_handler_auth.check(tmp_path)
    assert len(problems) == 1 and "H.get lacks authorized" in problems[0]


@pytest.mark.parametrize("method,path,body", [
    ("GET", "hubs", None),
    ("POST", "hubs", "{}"),
    ("GET", "launchers", None),
    ("GET", "version", None),
    ("DELETE", "hubs/x", None),
])
async def test_unauthenticated_requests_are_refused(http_server_client, jp_base_url, method, path, body):
    resp = await http_server_client.fetch(f"{jp_base_url}hubctl/api/{path}", method=method, body=body,
                                          allow_nonstandard_methods=True, raise_error=False)
    assert resp.code in (401, 403)
    assert list_hubs() == []


class TestReadOnly:
    @pytest.fixture
    def jp_server_config(self, jp_server_config):
        cfg = dict(jp_server_config)
        cfg["ServerApp"] = dict(cfg["ServerApp"], authorizer_class="authz.ReadOnlyAuthorizer")
        return cfg

    async def test_read_only_user_can_list_but_not_change(self, api):
        assert (await api("GET", "hubs")).code == 200
        assert (await api("GET", "launchers")).code == 200
        assert (await api("POST", "hubs", body={"n": 1})).code == 403
        assert (await api("PATCH", "hubs", "x", body={"n": 2})).code == 403
        assert (await api("DELETE", "hubs", "x")).code == 403
        assert list_hubs() == []


async def test_cookie_post_without_xsrf_is_refused(http_server_client, jp_base_url, jp_serverapp):
    token = jp_serverapp.identity_provider.token
    login = await http_server_client.fetch(f"{jp_base_url}api/status?token={token}", raise_error=False,
                                           follow_redirects=False)
    cookies = "; ".join(c.split(";")[0] for c in login.headers.get_list("Set-Cookie"))
    assert cookies
    url = f"{jp_base_url}hubctl/api/hubs"
    # the cookie alone authenticates a GET ...
    resp = await http_server_client.fetch(url, headers={"Cookie": cookies}, raise_error=False)
    assert resp.code == 200, resp.body
    # ... but a state-changing request without the _xsrf token is refused
    resp = await http_server_client.fetch(url, method="POST", body=json.dumps({"n": 1}),
                                          headers={"Cookie": cookies}, raise_error=False)
    assert resp.code == 403
    assert list_hubs() == []


@pytest.mark.parametrize("raw,reason", [
    ('{"name": "deep", "n": 1, "options": ' + "[" * 30_000 + "]" * 30_000 + "}", "too-deep"),
    ('{"name": "nan", "n": NaN}', "NaN"),
    ('{"name": "inf", "n": 1, "options": {"x": -Infinity}}', "Infinity"),
])
async def test_deeply_nested_or_non_finite_json_bodies_are_answered_400(api, raw, reason):
    resp = await api("POST", "hubs", raw=raw)
    assert resp.code == 400, resp.body
    assert reason in json.loads(resp.body)["message"]
    assert list_hubs() == []
