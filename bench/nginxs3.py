"""nginx in front of an imgz on a bucket, configured from the README's two snippets (the site and
its S3 location), plus one location of the benchmark's own that proxies the bucket directly.

The direct location is the README's S3 location itself under another name and without
``internal``: the same proxy directives, the same header hiding, the same bucket. A client asks
it for the path and query of one presigned GET made at the start of the run (valid for an hour),
exactly what imgz hands nginx in X-Accel-Redirect for that file. So the two sides differ only by
what imgz adds: the request to the app (its lookup in the database, its check, its signature)
and nginx's internal redirect. That is the fair "nginx proxying the bucket": nginx fetching a
signed object, as it must for a private bucket, without an app in front.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import procs

DIRECT = "/_bench_bucket/"


def readme_snippet(name: str) -> str:
    readme = (procs.ROOT / "README.md").read_text()
    block = readme.split(f"<!-- {name} -->", 1)[1].split(f"<!-- /{name} -->", 1)[0]
    return block.split("```nginx", 1)[1].split("```", 1)[0]


def site(port: int, imgz_url: str, data: Path, endpoint: str) -> str:
    """The README's site with its S3 location for this imgz and bucket, and the direct location."""
    host = endpoint.split("://", 1)[1]
    bucket_site = readme_snippet("nginx-s3-snippet")
    bucket_site = bucket_site.replace("https://s3.example.org", endpoint)
    bucket_site = bucket_site.replace("s3.example.org", host)
    location = bucket_site.split("location @imgz_gone", 1)[0]
    if "internal;" not in location or "location /_imgz_s3/" not in location:
        raise RuntimeError("the README's S3 location is not shaped as expected")
    direct = location.replace("location /_imgz_s3/", f"location {DIRECT}").replace("internal;", "")
    text = readme_snippet("nginx-snippet")
    head, _, tail = text.rpartition("}")
    text = head + bucket_site + direct + "}" + tail
    text = text.replace("listen 80;", f"listen {procs.HOST}:{port};")
    text = text.replace("server 127.0.0.1:8080;", f"server {imgz_url.split('://', 1)[1]};")
    return text.replace("/srv/imgz/data/images/", f"{data}/images/")


def start(pool: procs.Pool, prefix: Path, imgz_url: str, bucket) -> tuple[procs.Child, str] | None:
    exe = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                         if os.access(p, os.X_OK)), None)
    if exe is None:
        return None
    prefix.mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    conf = prefix / "nginx.conf"
    # one foreground process as the caller, as bench/procs.py's nginx (worker_processes 1)
    conf.write_text(procs.nginx_conf(prefix, site(port, imgz_url, prefix / "data", bucket.endpoint),
                                     connections=512))
    child = pool.add(procs.Child("nginx-s3", [exe, "-p", str(prefix), "-e",
                                              str(prefix / "error.log"), "-c", str(conf)],
                                 prefix / "stdout.log"))
    url = f"http://{procs.HOST}:{port}"
    if not procs.wait_http(url + "/", 10, child, accept=range(200, 600)):
        pool.stop(child)
        raise RuntimeError(f"nginx did not start; see {prefix / 'error.log'}")
    return child, url


def direct_path(bucket, key: str, seconds: int = 3600) -> str:
    """The direct location's path for one presigned GET of key (made once, for the whole run)."""
    signed = bucket.client.generate_presigned_url("get_object", Params={"Bucket": bucket.name,
                                                                        "Key": key},
                                                  ExpiresIn=seconds)
    parts = urlsplit(signed)
    return f"{DIRECT.rstrip('/')}{parts.path}?{parts.query}"
