"""The nginx part on Elastic Beanstalk (.platform/nginx/conf.d): valid for real nginx, and the app's limits.

Server-context settings live in conf.d/elasticbeanstalk/, which Elastic Beanstalk's server block includes; the
http context's conf.d/*.conf would be overridden by that block's own values. tests/deploy/test_instance.py runs
the whole layout with the app behind it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from src.config import AppConfig
from tests.servers import PROJECT

HTTP_SNIPPETS = PROJECT / ".platform" / "nginx" / "conf.d"
SNIPPETS = HTTP_SNIPPETS / "elasticbeanstalk"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _directives() -> dict[str, str]:
    files = [PROJECT / ".platform" / "nginx" / "nginx.conf", *sorted(SNIPPETS.glob("*.conf"))]
    text = "\n".join(path.read_text() for path in files)
    return {m.group(1): m.group(2) for m in re.finditer(r"^\s*(\w+)\s+([^;#]+);", text, re.MULTILINE)}


def _bytes(size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", size.strip()).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit.lower()]


def _seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)?", value.strip()).groups()  # type: ignore[union-attr]
    return int(number) * {"ms": 0.001, "s": 1, None: 1, "m": 60}[unit]


def test_nginx_limits_equal_the_apps():
    directives = _directives()
    app = AppConfig()
    assert _bytes(directives["client_max_body_size"]) == app.max_content_length
    assert _seconds(directives["client_body_timeout"]) == app.body_timeout
    assert directives["proxy_request_buffering"] == "on"
    assert _seconds(directives["client_header_timeout"]) == app.body_timeout


@pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed (Debian: apt-get install nginx)")
def test_real_nginx_accepts_the_snippets_where_elastic_beanstalk_includes_them(tmp_path):
    (tmp_path / "logs").mkdir()
    main = tmp_path / "nginx.conf"
    main.write_text(f"""
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {tmp_path}/logs/access.log;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {HTTP_SNIPPETS}/*.conf;
    server {{
        listen 127.0.0.1:8080;
        client_header_timeout 10s;
        client_body_timeout 10s;
        include {SNIPPETS}/*.conf;
        location / {{ proxy_pass http://127.0.0.1:8000; }}
    }}
}}
""")
    result = subprocess.run(
        [NGINX, "-t", "-c", str(main), "-p", str(tmp_path), "-e", str(tmp_path / "logs/e.log")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr
    broken = tmp_path / "broken.conf"
    broken.write_text(main.read_text().replace(f"include {HTTP_SNIPPETS}/*.conf;", "client_body_timeout ten;"))
    refused = subprocess.run(
        [NGINX, "-t", "-c", str(broken), "-p", str(tmp_path), "-e", str(tmp_path / "logs/e.log")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0  # the check does read what it is given
