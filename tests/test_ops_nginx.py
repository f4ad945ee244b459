"""/metrics behind the README's nginx site: every request reaches imgz from loopback, so only the
token opens it, whether imgz trusts the proxy's headers or not."""
from __future__ import annotations

import pytest
import requests

from conftest import LiveServer
from test_nginx import NGINX, _behind_nginx

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
TOKEN = "scrape-" + "k" * 24


@pytest.mark.parametrize("trust_proxy", ["0", "1"])
def test_metrics_through_nginx_need_the_token(tmp_path, trust_proxy):
    srv = LiveServer(tmp_path / "data", {"IMGZ_METRICS": "1", "IMGZ_METRICS_TOKEN": TOKEN,
                                         "IMGZ_TRUST_PROXY": trust_proxy})
    try:
        for _, front in _behind_nginx(srv, tmp_path):
            assert requests.get(front + "/healthz", timeout=10).status_code == 200
            refused = requests.get(front + "/metrics", timeout=10)
            assert refused.status_code == 403
            assert "imgz_http_requests_total" not in refused.text
            wrong = requests.get(front + "/metrics", headers={"Authorization": "Bearer nope"},
                                 timeout=10)
            assert wrong.status_code == 403
            scraped = requests.get(front + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"},
                                   timeout=10)
            assert scraped.status_code == 200
            assert "imgz_http_requests_total" in scraped.text
            # the scraper on the host itself, straight to the process, needs no token
            assert requests.get(srv.url + "/metrics", timeout=10).status_code == 200
    finally:
        srv.stop()
